"""The rows, useful-TFLOP/s figure and table shared by the kernel benchmark suites.

Time and peak memory are measured by :mod:`visionattn.analysis.profiling`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ['Row', 'attention_tflops', 'format_table', 'rows_as_dicts']


@dataclass
class Row:
    """One measured (problem, implementation, pass) combination of a benchmark table."""
    op: str
    problem: str
    impl: str
    dtype: str
    mode: str  # 'fwd' or 'fwd+bwd'
    ms: float | None
    peak_mib: float | None
    tflops: float | None = None
    note: str = ''
    extra: dict[str, Any] = field(default_factory=dict)


def attention_tflops(batch: int, heads: int, queries: int, keys_per_query: int, head_dim: int,
                     ms: float, mode: str) -> float:
    """Useful TFLOP/s: 4*B*H*N*K*d for a forward, 2.5x that for the backward (notes/performance.md)."""
    flops = 4 * batch * heads * queries * keys_per_query * head_dim
    if mode == 'fwd+bwd':
        flops *= 3.5
    return flops / (ms * 1e-3) / 1e12


def format_table(rows: list[Row]) -> str:
    """Markdown table of the rows, ready to paste into the committed results."""
    header = '| op | problem | impl | dtype | mode | ms | peak MiB | TFLOP/s | note |'
    lines = [header, '|' + '---|' * 9]
    for r in rows:
        fmt = lambda v, spec: '-' if v is None else format(v, spec)  # noqa: E731
        lines.append(f'| {r.op} | {r.problem} | {r.impl} | {r.dtype} | {r.mode} | {fmt(r.ms, ".3f")} | '
                     f'{fmt(r.peak_mib, ".1f")} | {fmt(r.tflops, ".2f")} | {r.note} |')
    return '\n'.join(lines)


def rows_as_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
