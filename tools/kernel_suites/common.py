"""Timing, peak-memory and table helpers shared by the kernel benchmark suites."""
from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


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


def peak_mib(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak tensor memory ``fn()`` allocates on top of what exists before it, in MiB.

    CUDA: the caching allocator's ``max_memory_allocated``. CPU: the same quantity, counted from the
    profiler's allocation events. (The process's resident-set high-water mark would also count what
    glibc keeps after frees and heap fragmentation, which made a flat-memory operator look as if its
    memory grew.)
    """
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == '[memory]' and e.device_type() == DeviceType.CPU), key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak / 2**20


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
