"""Benchmark suites of the project's attention operators against their baselines (``tools/benchmark_kernels.py``).

Each suite is a module here with ``run(device, dtypes, scope, deadline=None) -> list[Row]``; problem sizes
follow ``notes/performance.md``. :data:`SUITES` names them; adding an operator's suite means adding its
module and its name here. Every suite knows the scopes of :data:`SCOPES`: ``quick`` (tiny problems, a
smoke run of every implementation), ``compare`` (the published stage sizes, every implementation side by
side: the tables the targets are read from), ``full`` (``compare`` plus the suite's other problems).
"""
from __future__ import annotations

import importlib
from typing import Optional

import torch

from .common import Row

__all__ = ['SUITES', 'SCOPES', 'run_suite']

SUITES = ('na', 'bra')
SCOPES = ('quick', 'compare', 'full')


def run_suite(name: str, device: torch.device, dtypes: list[torch.dtype], scope: str,
              deadline: Optional[float] = None) -> list[Row]:
    """The rows of suite ``name`` (one of :data:`SUITES`) at ``scope`` (one of :data:`SCOPES`); rows not
    started by ``deadline`` (``time.monotonic()``) are listed as not run."""
    if name not in SUITES:
        raise KeyError(f'no kernel benchmark suite {name!r}; the suites are {SUITES}')
    if scope not in SCOPES:
        raise KeyError(f'no benchmark scope {scope!r}; the scopes are {SCOPES}')
    return importlib.import_module(f'{__name__}.{name}').run(device, dtypes, scope, deadline)
