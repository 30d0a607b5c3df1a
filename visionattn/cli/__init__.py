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
import sys
from typing import Callable, Optional, Sequence

from ..errors import UserError

__all__ = ['add_debug_argument', 'cli_main']


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--debug`` option every program takes (read by :func:`cli_main`)."""
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show the full traceback instead of a one-line message')


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
