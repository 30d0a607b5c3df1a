"""Measuring PyTorch code: wall time, peak tensor memory, FLOPs, which project operators run, and the machine.

One way to measure each quantity, shared by the model benchmark, the kernel benchmark suites, the
model cards and the CNN-attention overhead report:

- :func:`time_ms`: median wall time (CUDA-synchronised on GPUs).
- :func:`peak_mib`: peak tensor memory above what existed before the call. CUDA: the caching
  allocator's ``max_memory_allocated``; CPU: the same quantity, summed from the profiler's allocation
  events (a process's resident-set high-water mark would also count what glibc keeps after frees and
  heap fragmentation, which made a flat-memory operator look as if its memory grew).
- :func:`count_flops`: ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add of
  matmuls, convolutions and attention; the operators of :mod:`visionattn.ops` register their formulas
  beside their definitions), which refuses to undercount: an operator without a formula that is not
  plain PyTorch, or any attention/conv/matmul op without one, stops the count with an error.
- :func:`project_operators`: which ``visionattn::`` custom operators a forward pass calls (on the meta
  device, so it costs no compute): the models whose speed depends on the attention backend.
- :func:`machine`: what the numbers depend on (CPU or GPU, threads, versions, load average).

Why our own: torch has the counters and the profiler, but no CPU peak-memory figure comparable with
CUDA's, and its FLOP counter silently skips operators it has no formula for.
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

__all__ = ['time_ms', 'peak_mib', 'count_flops', 'project_operators', 'cpu_name', 'machine', 'load_average',
           'code_commit']


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], device: torch.device, warmup: int = 2, repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` calls after ``warmup`` calls."""
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
    """Peak tensor memory ``fn()`` allocates on top of what exists before it, in MiB (see the module docstring)."""
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


class _SeenOperators(TorchDispatchMode):
    """Records the operator packets dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[Any] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func._overloadpacket)
        return func(*args, **(kwargs or {}))


def _register_cpu_sdpa_formula() -> None:
    """torch counts SDPA's CUDA kernels but not its CPU one (used by timm and BiFormer's global attention)."""
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op not in flop_registry:
        @register_flop_formula(op)
        def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)


_HEAVY_WORDS = ('attention', 'conv', 'mm', 'matmul', 'einsum', 'linear')


def count_flops(model: Callable[[Any], Any], sample: Any) -> int:
    """FLOPs of ``model(sample)`` without autograd (2 per multiply-add); raises if a heavy op would be missed."""
    import visionattn.ops  # noqa: F401  (its attention ops register their FLOP formulas)
    _register_cpu_sdpa_formula()
    with torch.no_grad(), FlopCounterMode(display=False) as counter, _SeenOperators() as seen:
        model(sample)
    missed = sorted(str(op) for op in seen.ops if op not in flop_registry and (
        str(op).split('.')[0] not in ('aten', 'prim', 'prims') or any(w in str(op) for w in _HEAVY_WORDS)))
    if missed:
        raise RuntimeError(f'FLOPs would be undercounted: {missed} have no FLOP formula. Register one with '
                           'torch.utils.flop_counter.register_flop_formula beside the operator, as '
                           'visionattn.ops does.')
    return int(counter.get_total_flops())


def project_operators(model: nn.Module, input_size: tuple[int, ...]) -> set[str]:
    """Names of the ``visionattn::`` custom operators one forward of ``model`` at ``input_size`` calls.

    ``model`` should live on the meta device (build it under ``with torch.device('meta'):``): the
    operators have fake implementations there, so nothing is computed.
    """
    device = next(model.parameters()).device
    with torch.no_grad(), _SeenOperators() as seen:
        model(torch.zeros(input_size, device=device))
    return {str(op) for op in seen.ops if str(op).startswith('visionattn.')}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_commit() -> str:
    """The checkout's short commit hash, ``+changes`` when the code that runs (``visionattn/``, ``kernels/``) has
    uncommitted changes (edited tables and notes do not count); ``unknown`` outside a git checkout."""
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]

    def git(*command: str) -> Optional[str]:
        try:
            done = subprocess.run(['git', '-C', str(root), *command], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None
    head = git('rev-parse', '--short', 'HEAD')
    if head is None:
        return 'unknown'
    return head + ('+changes' if git('status', '--porcelain', '--untracked-files=no', '--', 'visionattn', 'kernels')
                   else '')


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded: other processes share the machine when they exceed the threads."""
    return [round(x, 2) for x in os.getloadavg()]


def machine(device: str, threads: Optional[int] = None) -> dict[str, Any]:
    """What the numbers depend on: device, threads (the measured processes'), versions, date and load."""
    env = dict(cpu=cpu_name(), cpu_count=os.cpu_count(), threads=threads or torch.get_num_threads(),
               torch=torch.__version__, python=platform.python_version(),
               date=time.strftime('%Y-%m-%d %H:%M:%S %Z'), load_average=load_average())
    if device.startswith('cuda'):
        env['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return env
