"""The command-line programs of visionattn: argument parsing, printing and exit codes only.

Each module here has a ``main(argv=None)``; ``tools/<name>.py``, ``python -m visionattn.cli.<name>`` and the
installed ``visionattn-<name>`` console scripts (``setup.cfg``) call it. What the programs compute lives in the rest of the package, importable and tested on its own.

Every ``main`` is wrapped by :func:`cli_main`: an expected user error (:class:`visionattn.errors.UserError`)
prints one line, ``error: <what is wrong and what to do>``, and exits with status 2 (argparse's status for
bad arguments); with ``--debug`` (:func:`add_debug_argument`) the traceback is shown instead.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any, Callable, Optional, Sequence

from ..errors import ConfigError, UserError

__all__ = ['add_debug_argument', 'cli_main', 'json_object']


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--debug`` option every program takes (read by :func:`cli_main`)."""
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show the full traceback instead of a one-line message')


def json_object(text: str, option: str) -> dict[str, Any]:
    """The keyword arguments an option gives as a JSON object (``--model-kwargs '{"depths": [2, 2]}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f'{option}: not valid JSON ({err}); give an object, e.g. \'{{"depths": [3, 4, 18, 5]}}\'')
    if not isinstance(value, dict):
        raise ConfigError(f'{option}: give a JSON object of keyword arguments, got {type(value).__name__}')
    return value


def cli_main(main: Callable[[list[str]], Optional[int]]) -> Callable[[Optional[Sequence[str]]], Optional[int]]:
    """Wrap a program's ``main(argv)``: user errors become one message and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv: Optional[Sequence[str]] = None) -> Optional[int]:
        args = list(sys.argv[1:] if argv is None else argv)
        try:
            return main(args)
        except UserError as err:
            if '--debug' in args:
                raise
            print(f'error: {err}', file=sys.stderr)
            raise SystemExit(err.exit_status) from None

    return wrapper
