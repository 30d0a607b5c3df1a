"""Bi-level routing attention: the project's ops against upstream's gather, FlexAttention and dense SDPA.

Problems (notes/performance.md): BiFormer-T/S stages 1-3 at 224x224 (n_win 7, head_dim 32, 64 keys per
query); a topk sweep 1 -> 4 -> 16 -> 64 at one size (64x64 map, 8x8 regions of 8x8 tokens, 2 heads), where
the ops' peak memory should stay flat; and one 600x500 image through the BRA stages of BiFormer-S in
its COCO setting (n_win 16, auto_pad: see :func:`stack_problem`).

Implementations (all take the same channels-last q, k, v and the same routing):
- ``triton``: ``bra_attention(backend='triton')`` (CUDA only here); ``torch``: the PyTorch path;
- ``gather``: ``bra_attention(backend='reference')``, upstream's topk-times gather of K and V;
- ``flex``: compiled FlexAttention over the region-major token sequence, with a BlockMask built from
  the routing every call (block level from region pairs, exact token mask in ``mask_mod``);
- ``sdpa``: dense ``scaled_dot_product_attention`` over all tokens (not the same result: the ceiling).
On CPU the table compares the PyTorch path with the gather only: the Triton kernels would run
interpreted, FlexAttention has no CPU backward, and dense SDPA is not the routed computation. There, peak
memory is the tensor bytes alive at the peak (:func:`visionattn.analysis.profiling.peak_mib`), the same quantity CUDA's
allocator reports on GPUs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ...ops import bra_attention, bra_routing

from ..profiling import peak_mib, time_ms
from .common import Row, attention_tflops

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


def sweep_problems(batch: int, topks: tuple[int, ...] = (1, 4, 16, 64)) -> list[Problem]:
    return [Problem(f'topk sweep 64x64, 8x8 regions, 2 heads, batch {batch}, topk {t}', batch, 64, 64, 2, 8, t)
            for t in topks]


# ----------------------------------------------------------------------------------------------
# implementations: (q, k, v, index, problem) -> out (B, H, W, heads, d)
# ----------------------------------------------------------------------------------------------
def _ours(backend: str) -> Callable:
    def run(q, k, v, index, p: Problem):
        return bra_attention(q, k, v, index, p.grid, scale=p.scale, backend=backend)
    return run


_gather = _ours('reference')  # upstream's gather formulation: the operator's reference backend


def _region_major(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, H, W, h, d) -> (B, h, N, d) with the tokens of each region contiguous, regions row-major."""
    b, height, width, heads, d = x.shape
    x = x.reshape(b, grid, height // grid, grid, width // grid, heads, d).permute(0, 5, 1, 3, 2, 4, 6)
    return x.reshape(b, heads, height * width, d)


def _from_region_major(x: torch.Tensor, grid: int, height: int, width: int) -> torch.Tensor:
    b, heads, _, d = x.shape
    x = x.reshape(b, heads, grid, grid, height // grid, width // grid, d).permute(0, 2, 4, 3, 5, 1, 6)
    return x.reshape(b, height, width, heads, d)


def _routing_block_mask(index: torch.Tensor, p: Problem, block: int = 128):
    """FlexAttention BlockMask of the routing: kv blocks from routed region pairs, tokens by mask_mod."""
    from torch.nn.attention.flex_attention import BlockMask
    regions, tokens, n = p.grid * p.grid, p.tokens, p.height * p.width
    routed = torch.zeros(p.batch, regions, regions, dtype=torch.bool, device=index.device)
    routed.scatter_(2, index, True)
    n_blocks = math.ceil(n / block)
    first = torch.arange(regions, device=index.device) * tokens
    blocks = torch.arange(n_blocks, device=index.device)
    touches = ((first[:, None] < (blocks[None] + 1) * block) &
               (first[:, None] + tokens > blocks[None] * block)).float()  # (regions, blocks)
    block_routed = (touches.t() @ routed.float() @ touches) > 0  # (B, q blocks, kv blocks)
    kv_num = block_routed.sum(-1, dtype=torch.int32)[:, None]
    kv_idx = torch.argsort((~block_routed).to(torch.int8), dim=-1, stable=True).to(torch.int32)[:, None]

    def mask_mod(b, h, q_idx, kv_idx):
        return routed[b, q_idx // tokens, kv_idx // tokens]

    return BlockMask.from_kv_blocks(kv_num, kv_idx, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(n, n))


_compiled_flex = None


def _flex(q, k, v, index, p: Problem):
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention
        torch._dynamo.config.recompile_limit = 64  # one graph per stage x dtype x (fwd, fwd+bwd): 12 > 8
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    out = _compiled_flex(_region_major(q, p.grid), _region_major(k, p.grid), _region_major(v, p.grid),
                         block_mask=_routing_block_mask(index, p), scale=p.scale)
    return _from_region_major(out, p.grid, p.height, p.width)


def _sdpa(q, k, v, index, p: Problem):
    def seq(x):
        return x.flatten(1, 2).transpose(1, 2)
    out = F.scaled_dot_product_attention(seq(q), seq(k), seq(v), scale=p.scale)
    return out.transpose(1, 2).unflatten(1, (p.height, p.width))


IMPLS: dict[str, Callable] = {'triton': _ours('triton'), 'torch': _ours('torch'), 'gather': _gather,
                              'flex': _flex, 'sdpa': _sdpa}
NOTES = {'flex': 'BlockMask built per call', 'sdpa': 'dense: all tokens, not routed (ceiling)'}


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------
def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16'}[dtype]


@dataclass
class Case:
    """One row to measure: ``make()`` allocates the inputs and returns the call to time and peak."""
    row: Row
    make: Callable[[], Callable[[], object]]
    repeat: int = 5
    flops: Callable[[float], float] | None = None


def _failure(error: Exception) -> str:
    if isinstance(error, torch.OutOfMemoryError):
        return 'out of memory'
    return f'failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}'


def measure(cases: list[Case], device: torch.device) -> list[Row]:
    """Time and peak every case; one that fails (out of memory, a baseline that does not support the
    problem) keeps its row, with the reason as the note and no numbers."""
    for case in cases:
        try:
            case.row.ms = time_ms(case.make(), device, warmup=1, repeat=case.repeat)
            case.row.tflops = case.flops(case.row.ms) if case.flops else None
            fn = case.make()
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

    row = Row('bra', p.name, impl, _dtype_name(dtype), mode, None, None, note=NOTES.get(impl, ''),
              extra=dict(batch=p.batch, heads=p.heads, map=[p.height, p.width], grid=p.grid, topk=p.topk))
    return Case(row, make, repeat, lambda ms: attention_tflops(p.batch, p.heads, p.height * p.width,
                                                               p.topk * p.tokens, HEAD_DIM, ms, mode))


def routing_case(p: Problem, device: torch.device, dtype: torch.dtype) -> Case:
    def make():
        q, k, _, _ = p.inputs(device, dtype, grad=False)
        return lambda: bra_routing(q, k, p.grid, p.topk)

    return Case(Row('bra', p.name, 'routing step (torch)', _dtype_name(dtype), 'fwd', None, None,
                    note='region means + affinity + top-k'), make)


def _add_note(row: Row, note: str) -> None:
    row.note = '; '.join(n for n in (row.note, note) if n)


def add_ratios(rows: list[Row]) -> None:
    """Note each row's speed and peak against the gather's on the same problem, and each topk-sweep
    peak against the same implementation's at the smallest topk."""
    gather = {(r.problem, r.dtype, r.mode): r for r in rows if r.impl == 'gather'}
    first: dict[tuple[str, str], float] = {}
    for row in rows:
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
    return Case(Row('bra', '600x500 image, BiFormer-S BRA stages 1-3 (26 blocks)', impl, _dtype_name(dtype), mode,
                    None, None, note=desc, extra=dict(stages=desc)), make, repeat=2)


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------
def run(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[Row]:
    cuda = device.type == 'cuda'
    batch = 2 if quick else (128 if cuda else CPU_BATCH)
    stage_impls = ['triton', 'gather', 'flex', 'sdpa'] if cuda else ['torch', 'gather']
    memory_impls = ['triton', 'gather'] if cuda else ['torch', 'gather']
    sweep = sweep_problems(2 if quick else (32 if cuda else 8), (1, 4) if quick else (1, 4, 16, 64))
    cases = []
    for dtype in dtypes:
        for p in stage_problems(batch):
            cases.append(routing_case(p, device, dtype))
            cases += [attention_case(p, impl, device, dtype, mode) for mode in ('fwd', 'fwd+bwd') for impl in stage_impls]
        cases += [attention_case(p, impl, device, dtype, 'fwd+bwd', repeat=3) for impl in memory_impls for p in sweep]
        if not quick:
            cases += [stack_case(impl, device, dtype, mode) for impl in memory_impls for mode in ('fwd', 'fwd+bwd')]
    rows = measure(cases, device)
    add_ratios(rows)
    return rows
