"""The rows, useful-TFLOP/s figure and table shared by the kernel benchmark suites.

Time and peak memory are measured by :mod:`visionattn.analysis.profiling`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ['Row', 'attention_tflops', 'auto_table', 'dtype_name', 'format_table', 'rows_as_dicts', 'fresh_compile']


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


def dtype_name(dtype: torch.dtype) -> str:
    """The short name the tables and the 'auto' table use (``--dtype`` spells it the same way)."""
    return {torch.float32: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16'}[dtype]


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
                     f'{fmt(r.peak_mib, ".1f")} | {fmt(r.tflops, ".3g")} | {r.note} |')
    return '\n'.join(lines)


def rows_as_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def fresh_compile() -> None:
    """Forget what torch.compile has compiled: each problem's FlexAttention compiles anew, as in a process
    that runs one model. (Dynamo compiles ``flex_attention`` once per shape and mask, up to its recompile
    limit of 8 per process, after which it would run FlexAttention's eager, dense path unannounced.)"""
    torch._dynamo.reset()


def auto_table(rows: list[Row], device: str, backends: tuple[str, ...] = ('triton', 'flex')) -> dict[str, Any]:
    """The measured table ``'auto'`` ranks ``backends`` by (``visionattn.ops.dispatch.load_auto_table``).

    Per op: each backend's total milliseconds over the (problem, dtype, mode) rows where any of ``backends``
    ran; a backend that failed or did not run on one of them gets null (it is ranked last).
    """
    ops: dict[str, dict[str, Any]] = {}
    for op in dict.fromkeys(r.op for r in rows):
        times = {(r.problem, r.dtype, r.mode, r.impl): r.ms for r in rows if r.op == op and r.impl in backends}
        ran = {key[:3] for key, ms in times.items() if ms is not None}
        if not ran:
            continue
        ops[op] = {}
        for backend in backends:
            each = [times.get((*key, backend)) for key in sorted(ran)]
            ops[op][backend] = None if None in each else round(sum(each), 4)
    return {'device': device, 'torch': torch.__version__, 'ops': ops,
            'problems': sorted({f'{r.op}: {r.problem} {r.dtype} {r.mode}' for r in rows
                                if r.impl in backends and r.ms is not None})}
