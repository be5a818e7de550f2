"""Built-in plugin: file readers (FITS, HDF5, NumPy) and the ``galaug ingest`` command.

Registered like a third-party plugin, and lazily: listing plugins imports
neither astropy.io.fits nor h5py.
"""

from galaug.hookspecs import hookimpl


@hookimpl
def galaug_register(register):
    register.source("galaug.sources.readers:FitsReader", name="fits",
                    summary="FITS images, cubes and multi-extension files (one band per HDU)")
    register.source("galaug.sources.readers:HDF5Reader", name="hdf5",
                    summary="HDF5 arrays of images: (N, H, W), (N, C, H, W) or (N, H, W, C)")
    register.source("galaug.sources.readers:NpyReader", name="npy",
                    summary="NumPy .npy (memory-mapped) and .npz arrays of images")


@hookimpl
def galaug_cli(cli):
    from galaug.cli.ingest import ingest_cmd

    cli.add_command(ingest_cmd)
