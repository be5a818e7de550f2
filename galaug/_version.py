"""The version of galaug, in a module of its own so that importing it imports nothing else."""

__all__ = ["__version__"]

__version__ = "0.1.0"
