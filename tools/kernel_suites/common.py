"""Timing, peak-memory and table helpers shared by the kernel benchmark suites."""
from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch


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


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], device: torch.device, warmup: int = 2, repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA-synchronised on GPUs)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _proc_status_mib(field_name: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field_name + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field_name} not in /proc/self/status')


def peak_mib(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory ``fn()`` adds on top of what is allocated before it runs, in MiB.

    CUDA: the caching allocator's peak. CPU: the process's resident-set high-water mark (VmHWM),
    reset through ``/proc/self/clear_refs`` right before ``fn`` (Linux), minus the resident set then.
    """
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    base = _proc_status_mib('VmRSS')
    fn()
    return _proc_status_mib('VmHWM') - base


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
