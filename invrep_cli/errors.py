"""The one exception family the core raises; only the CLI turns these into messages and exit codes."""

from __future__ import annotations


class InvrepError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this reaches it."""

    exit_code = 1


class UsageError(InvrepError):
    """Bad paths, bad options, missing weights: nothing was started (exit code 2)."""

    exit_code = 2


class DataError(UsageError):
    """The training or input data cannot be used (missing, empty, too small)."""


class WeightsError(UsageError):
    """Weights cannot be found, downloaded, verified or loaded."""


class DeviceError(UsageError):
    """A required device (e.g. ``--device cuda``) is not available."""


class ImageError(InvrepError):
    """One image cannot be read or written; a batch reports it and goes on."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ExportError(InvrepError):
    """ONNX export failed or its parity check against PyTorch is over tolerance."""
