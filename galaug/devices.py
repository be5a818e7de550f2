"""Torch devices named on the command line or in a config: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.

Importing this module does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from galaug.errors import GalaugError

if TYPE_CHECKING:
    import torch

__all__ = ["device_name", "resolve_device"]


def resolve_device(device: Any = "auto") -> torch.device:
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a torch.device.

    Raises :class:`GalaugError` for an unknown device or CUDA that is not available.
    """
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise GalaugError(f"unknown device {device!r} (use auto, cpu or cuda)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise GalaugError(f"device {device!r} asked for, but CUDA is not available here")
    return resolved


def device_name(device: Any = "auto") -> str:
    """:func:`resolve_device` as a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``), for configs and ``options.json``."""
    return str(resolve_device(device))
