"""Sources found on frames by segmentation: ``galaug ingest FRAME.fits OUT --detect --size 64``.

The detection image is the sum of every band on the first frame's pixel
grid (frames in order of wavelength, so the bluest band's grid): a frame
on the same grid is added as it is; a frame on another grid is first
resampled onto it through both WCSs (bilinear). photutils then

1. estimates the background and its RMS (``Background2D``: sigma-clipped
   statistics in boxes of :data:`BOX_SIZE` pixels that are at least half
   finite, median-filtered over 3 x 3 boxes) and subtracts the background;
2. smooths the image with a Gaussian of FWHM :data:`KERNEL_FWHM` pixels;
3. finds sources: at least ``npixels`` connected pixels (8-connected) of
   the smoothed image above ``threshold`` times the background RMS
   (``detect_sources``; the RMS is that of the image before smoothing, as
   in SExtractor and photutils' own examples), optionally deblended
   (``deblend_sources``);
4. measures each source (``SourceCatalog``): its centroid on the smoothed
   image and its flux, the sum of the background-subtracted pixels of its
   segment.

Sources are ordered by descending flux and named ``src1``, ``src2``, ...;
their positions go to the same stamp cutting as a catalogue's
(:mod:`galaug.sources.cutouts`): RA/Dec through each frame's WCS when every
frame has one, else pixels of the first frame's grid.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from galaug.errors import GalaugError, ParamError, require
from galaug.sources.cutouts import Catalogue, Frame, check_positions

__all__ = ["Detections", "detect", "check_params", "detection_image", "THRESHOLD", "NPIXELS", "KERNEL_FWHM",
           "BOX_SIZE"]

#: Default threshold, in units of the background RMS of the detection image.
THRESHOLD = 1.5
#: Default least number of connected pixels of a source.
NPIXELS = 10
#: FWHM in pixels of the Gaussian that smooths the detection image (a 5 x 5 kernel).
KERNEL_FWHM = 3.0
#: Side in pixels of the boxes of the background estimate (the frame's, when smaller).
BOX_SIZE = 64
#: The background of a box is median-filtered with its neighbours' over this many boxes a side.
_FILTER_SIZE = 3
#: A box with more than this percentage of NaN pixels is left out of the background (photutils: 10).
_EXCLUDE_PERCENTILE = 50.0
_INSTALL = "pip install 'galaug[astro]'"
#: Pixels of the first frame's grid mapped into another frame at a time when resampling.
_BLOCK = 1 << 20


@dataclasses.dataclass
class Detections:
    """Sources found on frames, brightest first.

    Attributes
    ----------
    ids : list of str
        ``src1``, ``src2``, ... in the order of the arrays.
    x, y : ndarray
        Centroids in 0-based pixels of the first frame (the centre of the
        first pixel is 0).
    ra, dec : ndarray or None
        The centroids in degrees (ICRS) through the first frame's WCS; None
        when it has none.
    flux : ndarray
        Background-subtracted flux of each source's segment on the detection
        image, in the frames' unit.
    n_detected : int
        Segments found, including any without a finite centroid (left out).
    image : str
        What the detection image is, in words.
    params : dict
        The detection parameters, for the provenance.
    """

    ids: list[str]
    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray | None
    dec: np.ndarray | None
    flux: np.ndarray
    n_detected: int
    image: str
    params: dict[str, Any]
    frames: list[Frame] = dataclasses.field(repr=False)

    def catalogue(self) -> Catalogue:
        """The positions as a :class:`Catalogue` for :func:`galaug.sources.cutouts.cut`.

        RA/Dec when every frame has a WCS (each frame is cut through its
        own), else pixels of the first frame's grid (every frame shares it).
        """
        path = self.frames[0].path
        if self.ra is not None and all(f.wcs is not None for f in self.frames):
            catalogue = Catalogue(path, list(self.ids), "sky", self.ra.copy(), self.dec.copy())
        else:
            catalogue = Catalogue(path, list(self.ids), "pixel", self.x.copy(), self.y.copy())
        check_positions(self.frames, catalogue)
        return catalogue


def _same_grid(first: Frame, frame: Frame) -> bool:
    """Whether ``frame`` has the pixel grid of ``first`` (same size and, where both have one, same WCS)."""
    if frame.image.shape[1:] != first.image.shape[1:]:
        return False
    if first.wcs is None or frame.wcs is None:
        return True  # as for x,y catalogues: frames of one size without WCS share one grid
    h, w = first.image.shape[1:]
    x = np.array([0, w - 1, 0, w - 1, (w - 1) / 2])
    y = np.array([0, 0, h - 1, h - 1, (h - 1) / 2])
    fx, fy = frame.wcs.world_to_pixel(first.wcs.pixel_to_world(x, y))
    return bool(np.all(np.abs(np.asarray(fx) - x) < 1e-3) and np.all(np.abs(np.asarray(fy) - y) < 1e-3))


def _onto(first: Frame, frame: Frame, plane: np.ndarray) -> np.ndarray:
    """``plane`` of ``frame`` resampled (bilinear) onto the pixel grid of ``first``; NaN off ``frame``."""
    from scipy.ndimage import map_coordinates

    h, w = first.image.shape[1:]
    out = np.empty((h, w))
    rows = max(1, _BLOCK // w)
    for top in range(0, h, rows):
        yy, xx = np.mgrid[top:min(top + rows, h), :w]
        fx, fy = frame.wcs.world_to_pixel(first.wcs.pixel_to_world(xx, yy))
        out[top:top + rows] = map_coordinates(plane, [np.asarray(fy), np.asarray(fx)], order=1,
                                              mode="constant", cval=np.nan)
    return out


def detection_image(frames: list[Frame]) -> tuple[np.ndarray, str]:
    """The sum of every band of ``frames`` on the first frame's grid (H, W), float64, and its description."""
    first = frames[0]
    total = np.zeros(first.image.shape[1:])
    resampled = []
    for frame in frames:
        plane = frame.image.astype(np.float64).sum(axis=0)
        if frame is first or _same_grid(first, frame):
            total += plane
        elif frame.wcs is None or first.wcs is None:
            lacking = first if first.wcs is None else frame
            raise GalaugError(f"{frame.path.name} ({frame.image.shape[2]}x{frame.image.shape[1]}) is not on the "
                              f"pixel grid of {first.path.name} ({first.image.shape[2]}x{first.image.shape[1]}) and "
                              f"{lacking.path.name} has no celestial WCS to align them for detection")
        else:
            total += _onto(first, frame, plane)
            resampled.append(frame.path.name)
    n_planes = sum(f.image.shape[0] for f in frames)
    names = [b for f in frames for b in (f.bands or ())]
    bands = ", ".join(names) if len(names) == n_planes else f"{n_planes} planes"
    what = first.path.name if n_planes == 1 else f"the sum of {bands} on the grid of {first.path.name}"
    if resampled:
        what += f" ({', '.join(resampled)} resampled through the WCS)"
    return total, what


def check_params(threshold: float, npixels: int, *, names: tuple[str, str] = ("threshold", "npixels")) -> None:
    """:class:`ParamError` for a threshold that is not a positive number or a bad pixel count, naming ``names``."""
    threshold_name, npixels_name = names
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) \
            or not (math.isfinite(threshold) and threshold > 0):
        raise ParamError(threshold_name, "{" + threshold_name + "} must be a positive number (x the background RMS), "
                         "got {value!r}", value=threshold)
    if isinstance(npixels, bool) or not isinstance(npixels, (int, np.integer)) or npixels < 1:
        raise ParamError(npixels_name, "{" + npixels_name + "} must be a positive whole number of pixels, "
                         "got {value!r}", value=npixels)


def detect(frames: list[Frame], *, threshold: float = THRESHOLD, npixels: int = NPIXELS,
           deblend: bool = False) -> Detections:
    """Find the sources of ``frames`` (see the module's docstring for how).

    Parameters
    ----------
    frames : list of Frame
        As :func:`galaug.sources.cutouts.load_frames` returns them.
    threshold : float
        In units of the background RMS of the detection image.
    npixels : int
        Least number of connected pixels above the threshold.
    deblend : bool
        Split blended sources (photutils ``deblend_sources``: 32 levels,
        contrast 0.001); off by default, since it also splits the knots of
        a resolved galaxy.

    Returns
    -------
    Detections
        Empty (``n_detected`` 0) when no source is found.

    Raises
    ------
    GalaugError
        When photutils is missing or the frames cannot be aligned; a
        :class:`ParamError` for a bad ``threshold`` or ``npixels``.
    """
    check_params(threshold, npixels)
    require("photutils", "source detection (--detect)", _INSTALL)
    from photutils.background import Background2D
    from photutils.segmentation import SourceCatalog, detect_sources, make_2dgaussian_kernel
    from photutils.utils import NoDetectionsWarning
    from scipy.ndimage import convolve

    image, what = detection_image(frames)
    mask = ~np.isfinite(image)
    if mask.all():
        raise GalaugError(f"{frames[0].path.name}: no finite pixels to detect sources on")
    box = min(BOX_SIZE, *image.shape)
    try:
        background = Background2D(np.where(mask, 0.0, image), box, mask=mask, filter_size=_FILTER_SIZE,
                                  exclude_percentile=_EXCLUDE_PERCENTILE)
    except ValueError as exc:
        raise GalaugError(f"{frames[0].path.name}: the background of the detection image cannot be estimated "
                          f"({exc})") from None
    data = np.where(mask, 0.0, image - background.background)
    smooth = convolve(data, make_2dgaussian_kernel(KERNEL_FWHM, size=5).array)
    params = {"threshold": float(threshold), "npixels": int(npixels), "deblend": bool(deblend),
              "kernel_fwhm": KERNEL_FWHM, "box_size": int(box), "filter_size": _FILTER_SIZE,
              "exclude_percentile": _EXCLUDE_PERCENTILE, "connectivity": 8, "image": what}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # finding none is the caller's to judge
        segments = detect_sources(smooth, threshold * background.background_rms, int(npixels), mask=mask)
    centroid, flux = np.empty((0, 2)), np.empty(0)
    if segments is not None:
        if deblend:
            require("skimage", "deblending (--deblend)", _INSTALL)
            from photutils.segmentation import deblend_sources

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # photutils notes sources whose deblending mode it changed
                segments = deblend_sources(smooth, segments, int(npixels), progress_bar=False)
        table = SourceCatalog(data, segments, convolved_data=smooth, mask=mask)
        centroid = np.atleast_2d(np.asarray(table.centroid, dtype=np.float64))  # (N, 2): x, y
        flux = np.atleast_1d(np.asarray(table.segment_flux, dtype=np.float64))
    n_detected = len(flux)
    good = np.all(np.isfinite(centroid), axis=1) & np.isfinite(flux)
    order = np.argsort(-flux[good], kind="stable")  # brightest first
    x, y, flux = centroid[good, 0][order], centroid[good, 1][order], flux[good][order]
    ra = dec = None
    if frames[0].wcs is not None:
        sky = frames[0].wcs.pixel_to_world(x, y).icrs
        ra, dec = np.asarray(sky.ra.deg, dtype=np.float64), np.asarray(sky.dec.deg, dtype=np.float64)
    ids = [f"src{k + 1}" for k in range(len(x))]
    return Detections(ids, x, y, ra, dec, flux, n_detected, what, params, frames)
