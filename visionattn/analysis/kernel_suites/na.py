"""Neighbourhood attention benchmark suite (na1d/na2d/na3d): sizes and baselines of notes/performance.md.

Implementations, all through :mod:`visionattn.ops` except dense SDPA: ``triton`` (the fused kernels;
CUDA, or interpreted on CPU), ``torch`` (the PyTorch path), ``flex`` (FlexAttention, compiled, with the
'flex' backend's block mask and the RPB as a score_mod; CPU: forward only), ``reference`` (the per-query
gather formulation: what most re-implementations do) and ``sdpa`` (dense attention over the same tokens,
not the same result: the per-FLOP ceiling). Every implementation's forward is first checked against
the PyTorch path; a mismatch is written in the note. TFLOP/s count useful FLOPs only (dense SDPA's are
all useful to it).

Scopes (``kernel_suites.SCOPES``): ``quick`` (tiny problems, a smoke run; on CPU without flex), ``compare`` (the NAT-T stage sizes at
224x224, kernel 7 with the DiNAT dilations, side by side: on CPU the forward at batch 8, on GPU forward
and forward+backward at batch 128; issue 17's targets), ``full`` (``compare`` plus head_dim 64, GNA
stride and causal 1-D/3-D problems, and on GPU NATTEN's FLUX case).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from ...ops import na1d, na2d, na3d
from ...ops.dispatch import triton_interpreted
from ...ops.na import _axis_key_count
from ..profiling import peak_mib, time_ms
from .common import Row, attention_tflops, dtype_name, fresh_compile

_OPS = {1: na1d, 2: na2d, 3: na3d}


@dataclass(frozen=True)
class Problem:
    batch: int
    shape: tuple[int, ...]
    heads: int
    head_dim: int
    kernel: int | tuple[int, ...]
    dilation: int | tuple[int, ...] = 1
    stride: int | tuple[int, ...] = 1
    causal: bool | tuple[bool, ...] = False
    rpb: bool = True
    unfused: bool = True  # also run the PyTorch path and the reference (the check is against the former)

    def per_axis(self, value) -> tuple:
        return tuple(value) if isinstance(value, tuple) else (value,) * len(self.shape)

    @property
    def name(self) -> str:
        def axes(value):
            return 'x'.join(map(str, self.per_axis(value)))
        causal = f' causal {axes(tuple(int(c) for c in self.per_axis(self.causal)))}' if any(
            self.per_axis(self.causal)) else ''
        stride = f' s{axes(self.stride)}' if any(s > 1 for s in self.per_axis(self.stride)) else ''
        return (f'{axes(self.shape)} h{self.heads} d{self.head_dim} k{axes(self.kernel)} dil{axes(self.dilation)}'
                f'{stride}{causal} B{self.batch}{" rpb" if self.rpb else ""}')

    @property
    def tokens(self) -> int:
        return math.prod(self.shape)

    def keys_per_query(self) -> float:
        """Mean keys in a query's window (fewer near the start of a causal axis)."""
        keys = math.prod(_axis_key_count(*axis) for axis in zip(self.shape, *(self.per_axis(v) for v in (
            self.kernel, self.dilation, self.stride, self.causal))))
        return keys / self.tokens

    def call(self, backend: str) -> Callable:
        op = _OPS[len(self.shape)]

        def run(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], scale: float) -> Tensor:
            return op(q, k, v, self.kernel, self.dilation, self.stride, self.causal, rpb=rpb, scale=scale,
                      backend=backend)
        return run


def nat_tiny(batch: int, head_dim: int = 32) -> list[Problem]:
    """NAT/DiNAT-Tiny at 224x224, kernel 7: (map, heads, dilations) per stage."""
    stages = [(56, 2, (1, 8)), (28, 4, (1, 4)), (14, 8, (1, 2)), (7, 16, (1,))]
    return [Problem(batch, (size, size), heads, head_dim, 7, d) for size, heads, dils in stages for d in dils]


def nd_problems(batch: int) -> list[Problem]:
    """GNA and the 1-D/3-D ops: blocked attention (stride = kernel), a strided window, a causal sequence and
    a video causal in time."""
    return [Problem(batch, (56, 56), 2, 32, 7, stride=7, rpb=False),
            Problem(batch, (56, 56), 2, 32, 7, stride=4, rpb=False),
            Problem(batch, (4096,), 4, 64, 255, causal=True, rpb=False),
            Problem(max(1, batch // 8), (8, 28, 28), 4, 32, (3, 7, 7), causal=(True, False, False), rpb=False)]


# NATTEN's FLUX case (256x256, 24 heads, head_dim 128, 80x80 window); the unfused paths would need terabytes.
FLUX = Problem(1, (256, 256), 24, 128, 80, rpb=False, unfused=False)


def dense_sdpa(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], scale: float) -> Tensor:
    """Dense attention over the same tokens (no mask): the per-FLOP ceiling."""
    batch, *_, heads, dim = q.shape
    qf, kf, vf = (t.reshape(batch, -1, heads, dim).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(qf, kf, vf, scale=scale)


# ----------------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------------

def _inputs(problem: Problem, device: torch.device, dtype: torch.dtype):
    torch.manual_seed(0)  # the same inputs for every implementation (checked against one reference)
    shape = (problem.batch, *problem.shape, problem.heads, problem.head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    rpb = None
    if problem.rpb:
        table = (problem.heads, *(2 * kk - 1 for kk in problem.per_axis(problem.kernel)))
        rpb = (0.02 * torch.randn(table, device=device)).requires_grad_()
    return q, k, v, rpb


def _measure(impl: Callable, problem: Problem, device: torch.device, dtype: torch.dtype, mode: str,
             reference: Optional[Tensor], quick: bool) -> tuple[Optional[float], Optional[float], str]:
    q, k, v, rpb = _inputs(problem, device, dtype)
    scale = problem.head_dim ** -0.5
    params = [t for t in (q, k, v, rpb) if t is not None]
    frozen = [None if t is None else t.detach() for t in (q, k, v, rpb)]
    note = ''
    try:
        with torch.no_grad():
            out = impl(*frozen, scale)
        if reference is not None and out.shape == reference.shape:
            err = (out.float() - reference.float()).abs().max().item()
            if not err <= (1e-3 if dtype == torch.float32 else 3e-2):
                note = f'MISMATCH vs the PyTorch path: max err {err:.2e}'
        del out
        if mode == 'fwd':
            def step():
                with torch.no_grad():
                    impl(*frozen, scale)
        else:
            grad = torch.randn(q.shape, device=device, dtype=dtype)

            def step():
                for t in params:
                    t.grad = None
                out = impl(q, k, v, rpb, scale)
                out.backward(grad if out.shape == grad.shape else torch.ones_like(out))
        warmup, repeat = (0, 1) if quick else (1, 2) if device.type == 'cpu' else (3, 10)
        ms = time_ms(step, device, warmup=warmup, repeat=repeat)
        peak = peak_mib(step, device)
        return ms, peak, note
    except (torch.OutOfMemoryError, MemoryError):
        return None, None, 'out of memory'
    except Exception as error:  # noqa: BLE001 (one failing baseline must not stop an unattended GPU run)
        if 'out of memory' in str(error).lower():
            return None, None, 'out of memory'
        return None, None, f'not run: {type(error).__name__}: {str(error).splitlines()[0][:100]}'


def _implementations(problem: Problem, device: torch.device, mode: str, scope: str) -> dict[str, Callable]:
    """What runs on this problem: triton on CUDA or interpreted (a CPU check of the suite itself); flex on
    CPU forward only (no backward there) and not in the quick scope (its first compile alone takes about
    30 s on a CPU; the op tests run it)."""
    impls: dict[str, Callable] = {}
    if device.type == 'cuda' or triton_interpreted():  # interpreted: a CPU check of the suite itself
        impls['triton'] = problem.call('triton')
    if problem.unfused:
        impls['torch'] = problem.call('torch')
    if device.type == 'cuda' or (mode == 'fwd' and scope != 'quick'):
        impls['flex'] = problem.call('flex')
    if problem.unfused:
        impls['reference'] = problem.call('reference')
    impls['sdpa'] = dense_sdpa
    return impls


def problems(device: torch.device, scope: str) -> list[Problem]:
    if scope == 'quick':  # every code path of the suite once, at the least interpreted-Triton time
        return [Problem(1, (8, 8), 2, 16, 3, 2), Problem(1, (16,), 2, 16, 5, stride=2, causal=True, rpb=False)]
    cuda = device.type == 'cuda'
    compare = nat_tiny(128 if cuda else 8)
    if scope == 'compare':
        return compare
    return compare + nat_tiny(128 if cuda else 8, head_dim=64) + nd_problems(128 if cuda else 8) + (
        [FLUX] if cuda else [])


def run(device: torch.device, dtypes: list[torch.dtype], scope: str, deadline: Optional[float] = None) -> list[Row]:
    """The suite's rows. ``deadline`` (``time.monotonic()``): rows not started by then are listed as not run."""
    quick = scope == 'quick'
    modes = ['fwd'] if device.type == 'cpu' and scope != 'quick' else ['fwd', 'fwd+bwd']
    rows: list[Row] = []
    for problem in problems(device, scope):
        for dtype in dtypes:
            reference = None
            for mode in modes:
                measured = {}
                for name, impl in _implementations(problem, device, mode, scope).items():
                    if deadline is not None and time.monotonic() > deadline:
                        measured[name] = (None, None, None)
                        rows.append(Row('na', problem.name, name, dtype_name(dtype), mode, None, None,
                                        None, 'not run: out of the time budget'))
                        continue
                    if reference is None and problem.unfused:
                        q, k, v, rpb = _inputs(problem, device, dtype)
                        with torch.no_grad():
                            reference = problem.call('torch')(q, k, v, rpb, problem.head_dim ** -0.5)
                        del q, k, v, rpb
                    if name == 'flex':
                        fresh_compile()
                    keys = problem.tokens if name == 'sdpa' else problem.keys_per_query()
                    ms, peak, note = _measure(impl, problem, device, dtype, mode,
                                              None if name in ('sdpa', 'torch') else reference, quick)
                    tflops = None if ms is None else attention_tflops(
                        problem.batch, problem.heads, problem.tokens, keys, problem.head_dim, ms, mode)
                    measured[name] = (ms, peak, tflops)
                    rows.append(Row('na', problem.name, name, dtype_name(dtype), mode, ms, peak,
                                    tflops, note))
                _compare(rows, measured)
    return rows


def _compare(rows: list[Row], measured: dict) -> None:
    """Append the target ratios to the notes of this (problem, dtype, mode)'s rows: Triton against flex and
    dense SDPA (GPU targets), the PyTorch path against compiled flex (CPU target) and the reference."""
    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return None if a is None or b is None else a / b

    recent = {r.impl: r for r in rows[-len(measured):]}
    ms = {name: m[0] for name, m in measured.items()}
    for name, parts in (
            ('triton', [('x flex speed', ratio(ms.get('flex'), ms.get('triton'))),
                        ('of SDPA TFLOP/s', ratio(measured.get('triton', (0, 0, None))[2],
                                                  measured.get('sdpa', (0, 0, None))[2]))]),
            ('torch', [('x flex speed', ratio(ms.get('flex'), ms.get('torch'))),
                       ('x reference speed', ratio(ms.get('reference'), ms.get('torch'))),
                       ('x reference peak', ratio(measured.get('torch', (0, None))[1],
                                                  measured.get('reference', (0, None))[1]))])):
        if name not in recent:
            continue
        notes = [f'{value:.0%} {label}' if label.startswith('of') else f'{value:.2f}{label}'
                 for label, value in parts if value]
        recent[name].note = '; '.join(n for n in [recent[name].note, *notes] if n)
