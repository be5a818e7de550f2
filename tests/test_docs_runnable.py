"""Every shell block of README.md and docs/*.md marked runnable runs as written.

A block is marked by the line ``<!-- runnable -->`` right before its fence
(```` ```bash ````, ```` ```sh ```` or ```` ```console ````; of a console
block only the ``$ `` lines run, and a command whose shown output starts
with ``Error: `` must end as a user error does: exit status 2, that line
on stderr). Each marked block runs with ``bash -e``
in a folder of its own, after a setup that puts there what its page says
the reader already has: ``SETUPS`` names the parts per page, built once
(tiny datasets, a copy of a shipped generator run, FITS/HDF5/NumPy files).
A failure names the file and the line of the block.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from conftest import galaxy_images

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
SHELLS = ("bash", "sh", "console")
#: the venv's (or the environment's) galaug, as a user who activated it has it on PATH
BIN = Path(sys.executable).parent
SHIPPED_ALAE = ROOT / "examples" / "checkpoints" / "alae-bulgedisk-tiny"

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """A marked block: the page, the line of its opening fence, its language and its text."""

    page: str
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def script(self) -> str:
        """The commands: the whole block, or a console block's ``$`` lines and their continuations, those shown
        failing with an ``Error:`` line checked to fail with it."""
        if self.lang != "console":
            return self.text
        commands: list[tuple[list[str], list[str]]] = []  # each command's lines, and the output shown after it
        continued = False
        for line in self.text.splitlines():
            if continued or line.startswith("$ "):
                if not continued:
                    commands.append(([], []))
                commands[-1][0].append(line if continued else line[2:])
                continued = line.rstrip().endswith("\\")
            elif commands:
                commands[-1][1].append(line)
        return "\n".join(_fails_with(lines, shown[0]) if shown and shown[0].startswith("Error: ") else "\n".join(lines)
                         for lines, shown in commands)


def _fails_with(command: list[str], error: str) -> str:
    """``command`` checked to end as a user error: exit status 2 with the line ``error`` on stderr (shown too)."""
    return "\n".join(["status=0", "{", *command, "} 2>.stderr || status=$?", "cat .stderr >&2",
                      'test "$status" -eq 2', f"grep -qxF -- {shlex.quote(error)} .stderr"])


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def read_page(path: Path) -> tuple[list[Block], list[str]]:
    """The marked blocks of ``path``, and what is wrong with its markers (a marker not on a shell block)."""
    page = path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()
    blocks, problems = [], []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        opening = _FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if opening is None or opening[2] not in SHELLS:
            problems.append(f"{page}:{i + 1}: {MARKER} is not right before a ```bash, ```sh or ```console fence")
            continue
        fence = opening[1]
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 2, len(lines)) if closing.match(lines[j])), None)
        if end is None:
            problems.append(f"{page}:{i + 2}: the marked block is never closed")
            continue
        blocks.append(Block(page, i + 2, opening[2], "\n".join(lines[i + 2:end])))
    return blocks, problems


BLOCKS = [block for path in doc_pages() for block in read_page(path)[0]]


# -- what each page says the reader has -----------------------------------------------------------------------------


def _galaxies(n: int, *, bands: int, size: int, seed: int) -> np.ndarray:
    """Galaxy-like images at the brightness of the shipped bulge+disk generator's data (peaks of a few 1000 nJy)."""
    return 10 * galaxy_images(n, bands=bands, size=size, seed=seed)


def _dataset(path: Path, n: int, *, seed: int) -> None:
    """``n`` galaxies in g, r, i, z, 32 x 32 at 0.4 arcsec, like the demo's and the shipped generator's data."""
    import galaug

    with galaug.create_dataset(path, bands=list("griz"), image_size=32, pixel_scale=0.4 * u.arcsec,
                               flux_unit="nJy", provenance=galaug.make_entry("docs-setup", seed=seed)) as writer:
        writer.append(_galaxies(n, bands=4, size=32, seed=seed))


def real_set(folder: Path) -> None:
    """``real.zarr``: a small real set."""
    _dataset(folder / "real.zarr", 40, seed=0)


def demo_outputs(folder: Path) -> None:
    """What ``make demo`` leaves in ``runs/demo/`` that the quickstart uses: ``real.zarr`` and its split."""
    from galaug.data.ops import split_dataset

    demo = folder / "runs" / "demo"
    demo.mkdir(parents=True)
    _dataset(demo / "real.zarr", 40, seed=0)
    split_dataset(demo / "real.zarr", demo / "real-train.zarr", demo / "real-val.zarr", val=0.2, seed=0)


def alae_run(folder: Path) -> None:
    """``runs/00000-alae-real-train``: a trained ALAE run (the shipped one: g, r, i, z, 32 x 32 at 0.4 arcsec)."""
    shutil.copytree(SHIPPED_ALAE, folder / "runs" / "00000-alae-real-train")


def train_val_gen(folder: Path) -> None:
    """``real-train.zarr`` (120), ``real-val.zarr`` (30) and ``gen.zarr``: 5x the training set, generated."""
    from galaug.generators import generate

    _dataset(folder / "real-train.zarr", 120, seed=1)
    _dataset(folder / "real-val.zarr", 30, seed=2)
    generate(SHIPPED_ALAE, folder / "gen.zarr", 600, seed=0)


def denoise_run(folder: Path) -> None:
    """``real-train.zarr`` (32), ``real-val.zarr`` (8) and ``runs/00000-denoise-real-train``: a tiny denoiser trained
    on the first (2 steps), as ``galaug task train denoise real-train.zarr --run-dir runs`` names it."""
    from galaug.runs import plan_training

    _dataset(folder / "real-train.zarr", 32, seed=3)
    _dataset(folder / "real-val.zarr", 8, seed=4)
    plan = plan_training("task", "denoise", folder / "real-train.zarr", seed=0,
                         degrade="psf:gaussian(sigma=1.5)|noise:gaussian(std=40)",
                         overrides={"width": 8, "blocks": 1, "epochs": 1, "batch_size": 16, "holdout": 0,
                                    "max_steps_per_epoch": 2})
    plan.run(plan.start(root=folder / "runs"))


def experiment_file(folder: Path) -> None:
    """``experiment.toml``: the page's file, with one arm (the practical case), one seed and a tiny denoiser."""
    (folder / "experiment.toml").write_text("""\
task = "denoise"
real = "real-train.zarr"
val = "real-val.zarr"
gen = "gen.zarr"
degrade = "psf:gaussian(sigma=1.5)|noise:gaussian(std=40)"
seeds = [0]
out = "runs/experiment"
metric = "mse"

[task_config]
width = 8
blocks = 2
epochs = 1
batch_size = 16
max_steps_per_epoch = 2

[[arms]]
name = "5x gen + 10% real"
real = "0.1"
gen = "5x"
""")


def _wcs(scale_arcsec: float, n: int) -> dict:
    """A tangent-plane WCS with square pixels of ``scale_arcsec``, centred on an ``n`` x ``n`` image."""
    return {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
            "CRVAL1": 150.1, "CRVAL2": 2.2, "CRPIX1": (n + 1) / 2, "CRPIX2": (n + 1) / 2,
            "CD1_1": -scale_arcsec / 3600, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": scale_arcsec / 3600}


def _fits(path: Path, data: np.ndarray, **cards) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data=data.astype(np.float32), header=fits.Header(list(cards.items()))).writeto(path)


def _hst(path: Path, sci: np.ndarray, *, chips: int = 1, err: str = "ERR", dq: str = "DQ",
         primary: tuple[tuple[str, str], ...] = (("INSTRUME", "ACS"), ("FILTER1", "CLEAR1L"), ("FILTER2", "F814W")),
         **sci_cards) -> None:
    """An HST file: a primary HDU with the filters (ACS's F814W), then SCI, ERR and DQ (or ``err``, ``dq``) of each
    chip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hdus = [fits.PrimaryHDU(header=fits.Header(list(primary)))]
    for chip in range(1, chips + 1):
        hdus += [fits.ImageHDU(sci * chip, header=fits.Header(list(sci_cards.items())), name="SCI", ver=chip),
                 fits.ImageHDU(np.full_like(sci, 0.5), name=err, ver=chip),
                 fits.ImageHDU(np.zeros(sci.shape, np.int16), name=dq, ver=chip)]
    fits.HDUList(hdus).writeto(path)


def _frame(n: int, positions: list[tuple[int, int]], seed: int) -> np.ndarray:
    """A frame of sky noise with a galaxy at each (x, y)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    frame = rng.normal(0, 1, (n, n))
    for x, y in positions:
        frame += 100 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 18)
    return frame.astype(np.float32)


def ingest_inputs(folder: Path) -> None:
    """The files docs/ingest.md reads: stamps, tiles, HDF5 and NumPy files, HST files, per-band files (named by a
    pattern or a manifest), frames and their catalogue, files of two pixel scales, files in nanomaggies and counts."""
    import h5py
    from astropy.wcs import WCS

    gri = _galaxies(8, bands=3, size=72, seed=3)
    for k in range(4):  # FITS cubes that name their bands and unit
        _fits(folder / "stamps" / f"gal{k}.fits", gri[k], BANDS="g,r,i", BUNIT="nJy", **_wcs(0.2, 72))
    for k, image in enumerate(_galaxies(3, bands=1, size=128, seed=4)):
        _fits(folder / "big" / f"big{k}.fits", image[0], FILTER="r", BUNIT="nJy", PIXSCALE=0.1, PIXUNIT="arcsec")
    (folder / "tiles").mkdir()
    for k in range(3):  # gzipped cubes that declare nothing
        raw = folder / f"tile{k}.fits"
        _fits(raw, gri[4 + k, :, 4:68, 4:68])
        (folder / "tiles" / f"tile{k}.fits.gz").write_bytes(gzip.compress(raw.read_bytes()))
        raw.unlink()
    with h5py.File(folder / "cat.h5", "w") as f:
        f["cutouts/img"] = _galaxies(5, bands=3, size=64, seed=5)
    stamps = _galaxies(6, bands=3, size=64, seed=6)
    stamps[2, 1, 10, 10] = np.nan  # a bad one, skipped
    np.savez(folder / "stamps.npz", stamps=stamps, ids=np.arange(6))

    sci = _galaxies(4, bands=1, size=64, seed=7)[:, 0]
    for k in range(2):
        _hst(folder / "hst" / f"j9a{k}_drz.fits", sci[k], **_wcs(0.05, 64))
        _hst(folder / "acs" / f"j9b{k}_flt.fits", sci[2 + k], chips=2)
        _hst(folder / "wfc3" / f"ib6{k}_drz.fits", sci[k], err="SIGMA", dq="FLAGS",  # maps under other names
             primary=(("INSTRUME", "WFC3"), ("FILTER", "F160W")), **_wcs(0.06, 64))

    with h5py.File(folder / "legacysurvey.hdf5", "w") as f:  # the Multimodal Universe's layout
        f["image_array"] = _galaxies(5, bands=3, size=64, seed=8)
        f["image_ivar"] = np.full((5, 3, 64, 64), 4.0, np.float32)
        f["image_mask"] = np.zeros((5, 3, 64, 64), bool)
        f["image_band"] = np.array([[b"g", b"r", b"z"]] * 5)
        f["image_scale"] = np.full((5, 3), 0.262, np.float32)
        f["object_id"] = np.arange(1000, 1005)
    with h5py.File(folder / "galaxiesml.h5", "w") as f:  # GalaxiesML's: g, r, i, z, y of HSC
        f["image"] = _galaxies(4, bands=5, size=64, seed=9)
        f["object_id"] = np.arange(4)

    griz = _galaxies(3, bands=4, size=64, seed=10)
    for k, image in enumerate(griz):  # one file per object and band
        for band, plane in zip("griz", image):
            _fits(folder / "cutouts" / f"gal{k:03d}_{band}.fits", plane, FILTER=band, BUNIT="nJy", **_wcs(0.2, 64))

    for k, image in enumerate(_galaxies(6, bands=1, size=64, seed=13)):  # a manifest: NGC1300, NGC1365 in g, r, i
        name = f"cutout_{8812 + k}.fits"
        _fits(folder / "downloads" / name, image[0], BUNIT="nJy", **_wcs(0.2, 64))
    (folder / "downloads" / "manifest.csv").write_text("id,band,path\n" + "".join(
        f"{galaxy},{band},cutout_{8812 + 3 * j + b}.fits\n"
        for j, galaxy in enumerate(("NGC1300", "NGC1365")) for b, band in enumerate("gri")))

    per_count = 10 ** ((31.4 - 27) / 2.5)  # nJy of one count at the AB zero point 27
    for k, image in enumerate(_galaxies(3, bands=1, size=64, seed=14)):  # flux units: nanomaggies, counts
        _fits(folder / "legacy" / f"legacy{k}.fits", image[0] / 3631, FILTER="r", BUNIT="nanomaggy",
              **_wcs(0.262, 64))
        _fits(folder / "hsc" / f"hsc{k}.fits", image[0] / per_count, FILTER="i", **_wcs(0.168, 64))
    for k, image in enumerate(_galaxies(2, bands=3, size=64, seed=15)):
        _fits(folder / "cubes" / f"cube{k}.fits", image / per_count, BANDS="g,r,i", **_wcs(0.2, 64))

    n, positions = 256, [(60, 70), (150, 140), (200, 80), (250, 200)]  # the last is too close to the edge
    cards = _wcs(0.05, n)
    _hst(folder / "frame_drz.fits", _frame(n, positions, seed=0), **cards)
    for k, band in enumerate("gri"):
        _fits(folder / "frames" / f"frame_{band}.fits", _frame(n, positions, seed=k), FILTER=band, BUNIT="nJy",
              **cards)
    ra, dec = WCS(fits.Header(list(cards.items()))).pixel_to_world_values(
        np.array([p[0] for p in positions], float), np.array([p[1] for p in positions], float))
    (folder / "catalog.csv").write_text("id,ra,dec\n" + "".join(
        f"obj{k},{float(a)!r},{float(d)!r}\n" for k, (a, d) in enumerate(zip(ra, dec))))

    for k, image in enumerate(_galaxies(3, bands=1, size=72, seed=11)):  # files of two pixel scales
        _fits(folder / "mixed" / f"a{k}.fits", image[0], FILTER="r", BUNIT="nJy", **_wcs(0.2, 72))
    for k, image in enumerate(_galaxies(2, bands=1, size=60, seed=12)):
        _fits(folder / "mixed" / f"b{k}.fits", image[0], FILTER="r", BUNIT="nJy", **_wcs(0.263, 60))


#: the parts of the setup each page with runnable blocks assumes, in the order they are laid down
SETUPS: dict[str, tuple[Callable[[Path], None], ...]] = {
    "README.md": (real_set, alae_run),
    "docs/quickstart.md": (demo_outputs,),
    "docs/ingest.md": (ingest_inputs,),
    "docs/mixing.md": (train_val_gen, alae_run),
    "docs/degradations.md": (real_set,),
    "docs/denoise.md": (denoise_run,),
    "docs/experiment.md": (train_val_gen, experiment_file),
    "docs/realism.md": (train_val_gen,),
    "docs/sources.md": (),
}


#: pages whose blocks take more than 10 s of CPU (each command starts Python, most import torch): marked slow,
#: which CI still runs (``make test`` runs every test); ``-m "not slow"`` leaves them out of a quick local run
SLOW_PAGES = {"README.md", "docs/experiment.md", "docs/mixing.md"}


@pytest.fixture(scope="session")
def setup_part(tmp_path_factory) -> Callable[[Callable[[Path], None]], Path]:
    """The folder of one part of the setup, built the first time a page needs it."""
    built: dict[str, Path] = {}

    def part(make: Callable[[Path], None]) -> Path:
        if make.__name__ not in built:
            folder = tmp_path_factory.mktemp(make.__name__)
            make(folder)
            built[make.__name__] = folder
        return built[make.__name__]

    return part


# -- the tests ------------------------------------------------------------------------------------------------------


def test_every_marker_is_on_a_shell_block_and_every_page_with_one_has_a_setup():
    problems = [p for path in doc_pages() for p in read_page(path)[1]]
    assert not problems, "\n".join(problems)
    pages = {block.page for block in BLOCKS}
    assert pages <= set(SETUPS), f"pages with runnable blocks but no entry in SETUPS: {sorted(pages - set(SETUPS))}"
    assert set(SETUPS) <= pages, f"SETUPS entries of pages without runnable blocks: {sorted(set(SETUPS) - pages)}"


def test_the_marker_is_found_and_checked(tmp_path, monkeypatch):
    """A marked block is read with its line; a marker on a Python block or an unclosed block is a problem."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text(f"# T\n\n{MARKER}\n```console\n$ galaug plugins \\\n    --help\nout\n$ ls\n```\n\n"
                    f"{MARKER}\n```python\nprint(1)\n```\n\n{MARKER}\n```bash\nls\n")
    blocks, problems = read_page(page)
    assert [(b.where, b.lang, b.script()) for b in blocks] == [
        ("page.md:4", "console", "galaug plugins \\\n    --help\nls")]
    assert problems == [f"page.md:11: {MARKER} is not right before a ```bash, ```sh or ```console fence",
                        "page.md:17: the marked block is never closed"]


@pytest.mark.parametrize("status, line, passes", [(2, "Error: no such thing", True), (2, "Error: another", False),
                                                  (1, "Error: no such thing", False), (0, "", False)])
def test_a_command_shown_failing_must_fail_with_its_error_line(tmp_path, status: int, line: str, passes: bool):
    """A console command followed by an ``Error:`` line passes when it exits 2 printing that line, and only then;
    the commands after it still run."""
    block = Block("page.md", 2, "console", f"$ sh -c 'echo \"{line}\" >&2; exit {status}' \\\n"
                                           "    arg0   # a comment\nError: no such thing\n$ echo next\nnext")
    result = subprocess.run(["bash", "-e", "-c", block.script()], cwd=tmp_path, capture_output=True, text=True)
    assert (result.returncode, "next" in result.stdout) == ((0, True) if passes else (1, False)), result.stderr


@pytest.mark.parametrize("block", [pytest.param(block, id=block.where,
                                                  marks=[pytest.mark.slow] if block.page in SLOW_PAGES else [])
                                     for block in BLOCKS])
def test_a_marked_block_runs_as_written(block: Block, setup_part, tmp_path):
    for make in SETUPS.get(block.page, ()):
        shutil.copytree(setup_part(make), tmp_path, symlinks=True, dirs_exist_ok=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "GALAUG_PROGRESS": "0"}
    result = subprocess.run(["bash", "-e", "-x", "-o", "pipefail", "-c", block.script()], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    said = f"{block.where}: exit status {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, said
    assert "Traceback" not in result.stderr, said
