"""Bi-level routing attention: the project's ops against upstream's gather, FlexAttention and dense SDPA.

Problems (notes/performance.md): BiFormer-T/S stages 1-3 at 224x224 (n_win 7, head_dim 32, 64 keys per
query); a topk sweep 1 -> 4 -> 16 -> 64 at one size (64x64 map, 8x8 regions of 8x8 tokens, 2 heads), where
the ops' peak memory should stay flat; and one 600x500 image through the BRA stages of BiFormer-S in
its COCO setting (n_win 16, auto_pad: see :func:`stack_problem`).

Implementations (all take the same channels-last q, k, v and the same routing), through
:func:`visionattn.ops.bra_attention` except dense SDPA:
- ``triton`` (CUDA, or interpreted on CPU), ``torch`` (the PyTorch path);
- ``gather``: the 'reference' backend, upstream's topk-times gather of K and V;
- ``flex``: the 'flex' backend (compiled FlexAttention, one region per block; CPU: forward only);
- ``sdpa``: dense ``scaled_dot_product_attention`` over all tokens (not the same result: the ceiling).
Peak memory is the tensor bytes alive at the peak (:func:`visionattn.analysis.profiling.peak_mib`), the
same quantity on CPU as CUDA's allocator reports on GPUs.

Scopes (as the na suite's): ``quick`` (tiny maps, a smoke run; on CPU without flex), ``compare`` (the
stage problems side by side: CPU forward at batch 8, GPU forward and forward+backward at batch 128), ``full`` (``compare`` plus
the topk sweep and the 600x500 image; on CPU the stages at batch 16 with the PyTorch path's and the
gather's forward+backward too).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ...ops import bra_attention, bra_routing
from ...ops.dispatch import triton_interpreted
from ...ops.routing import release_step_buffers

from ..profiling import peak_mib, time_ms
from .common import Row, attention_tflops, dtype_name, fresh_compile

HEAD_DIM = 32
CPU_BATCH = 16  # BiFormer stages on the 2-core CPU machines (GPU: 128, as published)


@dataclass
class Problem:
    """One routed-attention problem on a ``height x width`` map split into ``grid x grid`` regions."""
    name: str
    batch: int
    height: int
    width: int
    heads: int
    grid: int
    topk: int

    @property
    def tokens(self) -> int:
        return (self.height // self.grid) * (self.width // self.grid)

    @property
    def scale(self) -> float:
        return (self.heads * HEAD_DIM) ** -0.5  # BiFormer's scale, full channel dim

    def inputs(self, device: torch.device, dtype: torch.dtype, grad: bool) -> tuple:
        shape = (self.batch, self.height, self.width, self.heads, HEAD_DIM)
        q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=grad) for _ in range(3))
        index = bra_routing(q, k, self.grid, self.topk)
        return q, k, v, index


def stage_problems(batch: int) -> list[Problem]:
    return [Problem(f'BiFormer stage1 56x56, 2 heads, topk 1, batch {batch}', batch, 56, 56, 2, 7, 1),
            Problem(f'BiFormer stage2 28x28, 4 heads, topk 4, batch {batch}', batch, 28, 28, 4, 7, 4),
            Problem(f'BiFormer stage3 14x14, 8 heads, topk 16, batch {batch}', batch, 14, 14, 8, 7, 16)]


def quick_problems() -> list[Problem]:
    """The quick scope's problem (a smoke run of every implementation; Triton interpreted on CPU)."""
    return [Problem('quick 8x8, 2x2 regions, 2 heads, topk 3, batch 1', 1, 8, 8, 2, 2, 3)]


def sweep_problems(batch: int) -> list[Problem]:
    return [Problem(f'topk sweep 64x64, 8x8 regions, 2 heads, batch {batch}, topk {t}', batch, 64, 64, 2, 8, t)
            for t in (1, 4, 16, 64)]


# ----------------------------------------------------------------------------------------------
# implementations: (q, k, v, index, problem) -> out (B, H, W, heads, d)
# ----------------------------------------------------------------------------------------------
def _ours(backend: str) -> Callable:
    def run(q, k, v, index, p: Problem):
        return bra_attention(q, k, v, index, p.grid, scale=p.scale, backend=backend)
    return run


_gather = _ours('reference')  # upstream's gather formulation: the operator's reference backend


def _sdpa(q, k, v, index, p: Problem):
    def seq(x):
        return x.flatten(1, 2).transpose(1, 2)
    out = F.scaled_dot_product_attention(seq(q), seq(k), seq(v), scale=p.scale)
    return out.transpose(1, 2).unflatten(1, (p.height, p.width))


IMPLS: dict[str, Callable] = {'triton': _ours('triton'), 'torch': _ours('torch'), 'gather': _gather,
                              'flex': _ours('flex'), 'sdpa': _sdpa}
NOTES = {'flex': 'one region per block, mask built per call', 'sdpa': 'dense: all tokens, not routed (ceiling)'}


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One row to measure: ``make()`` allocates the inputs and returns the call to time and peak."""
    row: Row
    make: Callable[[], Callable[[], object]]
    repeat: int = 5
    flops: Callable[[float], float] | None = None
    warmup: int = 1


def _failure(error: Exception) -> str:
    if isinstance(error, torch.OutOfMemoryError):
        return 'out of memory'
    return f'failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}'


def measure(cases: list[Case], device: torch.device, deadline: Optional[float] = None) -> list[Row]:
    """Time and peak every case; one that fails (out of memory, a baseline that does not support the
    problem) keeps its row, with the reason as the note and no numbers, as does one not started by the
    ``deadline`` (``time.monotonic()``)."""
    for case in cases:
        if deadline is not None and time.monotonic() > deadline:
            _add_note(case.row, 'not run: out of the time budget')
            continue
        if case.row.impl == 'flex':
            fresh_compile()
        try:
            case.row.ms = time_ms(case.make(), device, warmup=case.warmup, repeat=case.repeat)
            case.row.tflops = case.flops(case.row.ms) if case.flops else None
            fn = case.make()
            release_step_buffers()  # the PyTorch path keeps its CPU step buffer between calls: count it
            case.row.peak_mib = peak_mib(fn, device)
        except Exception as error:  # noqa: BLE001 - reported in the table, not fatal
            _add_note(case.row, _failure(error))
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    return [case.row for case in cases]


def attention_case(p: Problem, impl: str, device: torch.device, dtype: torch.dtype, mode: str,
                   repeat: int = 5) -> Case:
    run = IMPLS[impl]

    def make():
        q, k, v, index = p.inputs(device, dtype, grad=mode == 'fwd+bwd')
        if mode == 'fwd':
            def fn():
                with torch.no_grad():
                    return run(q, k, v, index, p)
        else:
            grad_out = torch.randn_like(q)

            def fn():
                run(q, k, v, index, p).backward(grad_out)
        return fn

    row = Row('bra', p.name, impl, dtype_name(dtype), mode, None, None, note=NOTES.get(impl, ''),
              extra=dict(batch=p.batch, heads=p.heads, map=[p.height, p.width], grid=p.grid, topk=p.topk))
    return Case(row, make, repeat, lambda ms: attention_tflops(p.batch, p.heads, p.height * p.width,
                                                               p.topk * p.tokens, HEAD_DIM, ms, mode))


def routing_case(p: Problem, device: torch.device, dtype: torch.dtype) -> Case:
    def make():
        q, k, _, _ = p.inputs(device, dtype, grad=False)
        return lambda: bra_routing(q, k, p.grid, p.topk)

    return Case(Row('bra', p.name, 'routing step (torch)', dtype_name(dtype), 'fwd', None, None,
                    note='region means + affinity + top-k'), make)


def _add_note(row: Row, note: str) -> None:
    row.note = '; '.join(n for n in (row.note, note) if n)


def add_ratios(rows: list[Row]) -> None:
    """Note each row's speed and peak against the gather's on the same problem, the PyTorch path's speed
    against compiled FlexAttention's (the CPU target), and each topk-sweep peak against the same
    implementation's at the smallest topk."""
    gather = {(r.problem, r.dtype, r.mode): r for r in rows if r.impl == 'gather'}
    flex = {(r.problem, r.dtype, r.mode): r for r in rows if r.impl == 'flex'}
    first: dict[tuple[str, str], float] = {}
    for row in rows:
        versus_flex = flex.get((row.problem, row.dtype, row.mode))
        if row.impl == 'torch' and versus_flex is not None and row.ms and versus_flex.ms:
            _add_note(row, f'{versus_flex.ms / row.ms:.2f}x flex speed')
        base = gather.get((row.problem, row.dtype, row.mode))
        if base is not None and row.impl in IMPLS and row is not base and row.ms and base.ms:
            _add_note(row, f'{base.ms / row.ms:.2f}x gather speed')
            if row.peak_mib and base.peak_mib:
                _add_note(row, f'{row.peak_mib / base.peak_mib:.2f}x gather peak')
        if row.problem.startswith('topk sweep') and row.peak_mib:
            first.setdefault((row.impl, row.dtype), row.peak_mib)
            _add_note(row, f'peak x{row.peak_mib / first[(row.impl, row.dtype)]:.2f} of topk 1')


# ----------------------------------------------------------------------------------------------
# one 600x500 image through BiFormer-S's routing-attention stages
# ----------------------------------------------------------------------------------------------
def stack_problem(image: tuple[int, int] = (600, 500), n_win: int = 16) -> list[dict]:
    """The BRA stages of BiFormer-S in its COCO config (n_win 16, topks 1/4/16, auto_pad) for one image.

    Feature maps follow the stem (two stride-2 3x3 convs) and the stride-2 downsamplers: 600x500 gives
    150x125, 75x63 and 38x32, zero-padded to multiples of n_win. Stage 4 (plain global attention) has no
    routing and is left out.
    """
    height, width = image
    stages = []
    for i, (channels, topk, depth) in enumerate([(64, 1, 4), (128, 4, 4), (256, 16, 18)]):
        for _ in range(2 if i == 0 else 1):
            height, width = (height + 1) // 2, (width + 1) // 2
        padded = (math.ceil(height / n_win) * n_win, math.ceil(width / n_win) * n_win)
        stages.append(dict(map=(height, width), padded=padded, channels=channels, heads=channels // HEAD_DIM,
                           topk=topk, depth=depth, n_win=n_win))
    return stages


def stack_case(impl: str, device: torch.device, dtype: torch.dtype, mode: str) -> Case:
    """Each block: qkv Linear(C, 3C) -> bra_routing -> attention -> Linear(C, C) -> residual, on one
    zero-padded map per stage; in training every block's graph stays alive until one backward."""
    stages = stack_problem()
    run = IMPLS[impl]

    def make():
        torch.manual_seed(0)
        layers = [[(torch.nn.Linear(s['channels'], 3 * s['channels']).to(device, dtype),
                    torch.nn.Linear(s['channels'], s['channels']).to(device, dtype)) for _ in range(s['depth'])]
                  for s in stages]
        inputs = []
        for s in stages:
            x = torch.zeros(1, *s['padded'], s['channels'], device=device, dtype=dtype)
            x[:, :s['map'][0], :s['map'][1]] = torch.randn(1, *s['map'], s['channels'], device=device, dtype=dtype)
            inputs.append(x)

        def fn():
            with torch.set_grad_enabled(mode == 'fwd+bwd'):
                outs = []
                for x, s, blocks in zip(inputs, stages, layers):
                    p = Problem('', 1, *s['padded'], s['heads'], s['n_win'], s['topk'])
                    for qkv, proj in blocks:
                        q, k, v = qkv(x).unflatten(-1, (3, s['heads'], HEAD_DIM)).unbind(3)
                        x = x + proj(run(q, k, v, bra_routing(q, k, p.grid, p.topk), p).flatten(3))
                    outs.append(x)
                if mode == 'fwd+bwd':
                    sum(o.float().sum() for o in outs).backward()
        return fn

    desc = ' / '.join(f"{s['map'][0]}x{s['map'][1]}->{s['padded'][0]}x{s['padded'][1]} C{s['channels']} "
                      f"topk{s['topk']} x{s['depth']}" for s in stages)
    return Case(Row('bra', '600x500 image, BiFormer-S BRA stages 1-3 (26 blocks)', impl, dtype_name(dtype), mode,
                    None, None, note=desc, extra=dict(stages=desc)), make, repeat=2)


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------
def run(device: torch.device, dtypes: list[torch.dtype], scope: str, deadline: Optional[float] = None) -> list[Row]:
    cuda, quick = device.type == 'cuda', scope == 'quick'
    batch = 128 if cuda else 8 if scope == 'compare' else CPU_BATCH
    impls = ['triton', 'torch', 'gather', 'flex', 'sdpa'] if cuda or triton_interpreted() else \
        ['torch', 'gather', 'flex', 'sdpa']
    if quick and not cuda:
        impls.remove('flex')  # its first compile alone takes about 30 s on a CPU; the op tests run it
    backward = [i for i in impls if i != 'flex'] if cuda or quick else \
        (['torch', 'gather'] if scope == 'full' else [])  # FlexAttention has no CPU backward
    memory_impls = ['triton', 'gather'] if cuda else ['torch', 'gather']
    cases = []
    for dtype in dtypes:
        for p in quick_problems() if quick else stage_problems(batch):
            cases.append(routing_case(p, device, dtype))
            cases += [attention_case(p, impl, device, dtype, 'fwd') for impl in impls]
            cases += [attention_case(p, impl, device, dtype, 'fwd+bwd') for impl in backward + (
                ['flex'] if cuda else [])]
        if scope == 'full':
            sweep = sweep_problems(32 if cuda else 8)
            cases += [attention_case(p, impl, device, dtype, 'fwd+bwd', repeat=3) for impl in memory_impls
                      for p in sweep]
            cases += [stack_case(impl, device, dtype, mode) for impl in memory_impls for mode in ('fwd', 'fwd+bwd')]
    if quick:  # one call each, no warmup: a smoke run, and interpreted Triton is slow
        for case in cases:
            case.warmup, case.repeat = 0, 1
    rows = measure(cases, device, deadline)
    add_ratios(rows)
    return rows
