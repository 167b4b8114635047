"""Typed errors the library raises and the CLI turns into one line and exit code 2.

Every error a user can cause (a bad spec, missing data, an absent device) is a `CnnbenchError`.
"""

from __future__ import annotations


class CnnbenchError(Exception):
    """Base class: the message is already one complete line for the user."""


class SpecError(CnnbenchError):
    """A spec (or an option that overrides it) is invalid.

    >>> str(SpecError("my_net.yaml", "layers[2].filters", "must be a positive integer, got -3"))
    'my_net.yaml: layers[2].filters: must be a positive integer, got -3'
    """

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


class DataError(CnnbenchError):
    """A dataset cannot be loaded or does not fit the model."""


class DeviceError(CnnbenchError):
    """A device or Keras backend that was asked for is not available."""


class UsageError(CnnbenchError):
    """A command-line value (e.g. a `--values` list) is malformed."""


class OutputError(CnnbenchError):
    """Results cannot be written where they were asked for (a file in the way, read-only, a full disk)."""
