"""Benchmark suites of the project's attention operators against their baselines (``tools/benchmark_kernels.py``).

Each suite is a module here with ``run(device, dtypes, quick) -> list[Row]``; problem sizes follow
``notes/performance.md``. :data:`SUITES` names them; adding an operator's suite means adding its module
and its name here.
"""
from __future__ import annotations

import importlib

import torch

from .common import Row

__all__ = ['SUITES', 'run_suite']

SUITES = ('na2d', 'bra')


def run_suite(name: str, device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[Row]:
    """The rows of suite ``name`` (one of :data:`SUITES`)."""
    if name not in SUITES:
        raise KeyError(f'no kernel benchmark suite {name!r}; the suites are {SUITES}')
    return importlib.import_module(f'{__name__}.{name}').run(device, dtypes, quick=quick)
