"""Errors a user causes and can fix, as opposed to bugs.

Every expected mistake (a missing or damaged file, a config that cannot run, an unknown name, weights
that cannot be fetched) raises a subclass of :class:`UserError` whose message says what is wrong and
what to do. The command-line tools print that message alone and exit with status 2
(:func:`visionattn.cli.cli_main`); ``--debug`` shows the traceback instead. Each class also derives
from the built-in exception a caller would expect (``ValueError``, ``FileNotFoundError``, ...), so
code that caught those before keeps working.

A user error raised inside a DataLoader worker reaches the main process re-made from the worker's
traceback text (``torch.utils.data`` re-raises ``type(err)("Caught ... Original Traceback ...")``);
:class:`UserError` recovers the original one-line message from that text and keeps the worker's
traceback as a note, which ``--debug`` shows.
"""
from __future__ import annotations

__all__ = ['UserError', 'ConfigError', 'DataError', 'MissingFileError', 'CheckpointError',
           'WeightsUnavailableError', 'UnknownNameError', 'UnsupportedBackendError', 'DistributedError']


class UserError(Exception):
    """A mistake in what the user asked for or supplied; the message says what to do."""

    exit_status = 2

    def __init__(self, *args: object) -> None:
        original = _message_from_worker_traceback(type(self), args)
        if original is None:
            super().__init__(*args)
        else:
            super().__init__(original)
            self.add_note(str(args[0]))


def _message_from_worker_traceback(cls: type, args: tuple) -> str | None:
    """The message of a ``cls`` error that torch's DataLoader re-raised with the worker's traceback as text."""
    if len(args) != 1 or not isinstance(args[0], str) or not args[0].startswith(f'Caught {cls.__name__} in '):
        return None
    text = args[0]
    name = cls.__qualname__ if cls.__module__ in ('builtins', '__main__') else f'{cls.__module__}.{cls.__qualname__}'
    start = text.rfind(f'\n{name}: ')
    return text[start + len(name) + 3:].rstrip('\n') if start >= 0 else None


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


class DistributedError(UserError, RuntimeError):
    """A process of a distributed run stopped answering (dead, stopped, hung or unreachable); names it."""
