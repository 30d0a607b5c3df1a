"""Errors a user causes and can fix, as opposed to bugs.

Every expected mistake (a missing or damaged file, a config that cannot run, an unknown name, weights
that cannot be fetched) raises a subclass of :class:`UserError` whose message says what is wrong and
what to do. The command-line tools print that message alone and exit with status 2
(:func:`visionattn.cli.cli_main`); ``--debug`` shows the traceback instead. Each class also derives
from the built-in exception a caller would expect (``ValueError``, ``FileNotFoundError``, ...), so
code that caught those before keeps working.
"""
from __future__ import annotations

__all__ = ['UserError', 'ConfigError', 'DataError', 'MissingFileError', 'CheckpointError',
           'WeightsUnavailableError', 'UnknownNameError', 'UnsupportedBackendError']


class UserError(Exception):
    """A mistake in what the user asked for or supplied; the message says what to do."""

    exit_status = 2


class ConfigError(UserError, ValueError):
    """A config, or an override of it, that cannot run as given."""


class DataError(UserError, ValueError):
    """A dataset, image, mask or annotation that cannot be used (names the file)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or a config points to) does not exist."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is damaged, unsafe to load, or does not fit the model."""


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights could not be fetched; the message says how to supply them by hand."""


class UnknownNameError(UserError, KeyError, ValueError):
    """An unknown model, family, backend or other registered name (a failed lookup of a bad value)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ''


class UnsupportedBackendError(UserError, RuntimeError):
    """An attention backend asked for by name that cannot run the call (device, dtype, head_dim)."""
