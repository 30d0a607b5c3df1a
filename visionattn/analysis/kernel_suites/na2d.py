"""Neighbourhood attention (na2d) benchmark suite: sizes and baselines of notes/performance.md.

GPU: the Triton kernels vs FlexAttention (compiled, NATTEN's neighbourhood as a block mask, RPB as a
score_mod) vs a naive gather implementation vs dense SDPA over the same tokens, fwd and fwd+bwd.
The Triton row's note gives its speed-up over FlexAttention and its useful TFLOP/s as a fraction of
dense SDPA's (targets at NAT-Tiny sizes: >= 1.5x and >= 40%).
CPU: the PyTorch path vs the naive gather implementation, time and peak memory (target at 56x56,
kernel 7: peak <= 0.25x of naive). Every implementation's forward is first checked against
``visionattn.ops.na2d``'s PyTorch path; a mismatch is written in the note.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from ...ops import na2d
from ...ops.dispatch import triton_interpreted

from ..profiling import peak_mib, time_ms
from .common import Row, attention_tflops


@dataclass(frozen=True)
class Problem:
    batch: int
    size: int
    heads: int
    head_dim: int
    kernel: int
    dilation: int
    rpb: bool = True
    unfused: bool = True  # also run the PyTorch path and the naive gather (and check against the former)

    @property
    def name(self) -> str:
        return (f'{self.size}x{self.size} h{self.heads} d{self.head_dim} k{self.kernel} dil{self.dilation} '
                f'B{self.batch}{" rpb" if self.rpb else ""}')

    @property
    def tokens(self) -> int:
        return self.size * self.size


def nat_tiny(batch: int, head_dim: int = 32) -> list[Problem]:
    """NAT/DiNAT-Tiny at 224x224, kernel 7: (map, heads, dilations) per stage."""
    stages = [(56, 2, (1, 8)), (28, 4, (1, 4)), (14, 8, (1, 2)), (7, 16, (1,))]
    return [Problem(batch, size, heads, head_dim, 7, d) for size, heads, dils in stages for d in dils]


# NATTEN's FLUX case uses an 80x80 window; NATTEN 0.14 semantics need an odd kernel, so 79x79.
# The unfused implementations would need terabytes there.
FLUX = Problem(1, 256, 24, 128, 79, 1, rpb=False, unfused=False)


# ----------------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------------

def _window_index(length: int, kernel: int, dilation: int, device: torch.device) -> Tensor:
    """(length, kernel) key positions of each query's window (NATTEN 0.14, dilation groups)."""
    pos = torch.arange(length, device=device)
    group, group_pos = pos % dilation, pos // dilation
    group_len = (length - group + dilation - 1) // dilation
    start = torch.minimum((group_pos - kernel // 2).clamp(min=0), group_len - kernel)
    return (start[:, None] + torch.arange(kernel, device=device)) * dilation + group[:, None]


def naive_na2d(q: Tensor, k: Tensor, v: Tensor, kernel: int, dilation: int, rpb: Optional[Tensor],
               scale: float) -> Tensor:
    """What most re-implementations do: gather the k*k keys and values of every query (unfold-style),
    then a batched matmul; memory tokens x k^2 x head_dim per head."""
    batch, height, width, heads, dim = q.shape
    rows = _window_index(height, kernel, dilation, q.device)
    cols = _window_index(width, kernel, dilation, q.device)
    keys = (rows[:, None, :, None] * width + cols[None, :, None, :]).reshape(height * width, -1)
    kf = k.permute(0, 3, 1, 2, 4).reshape(batch, heads, height * width, dim)
    vf = v.permute(0, 3, 1, 2, 4).reshape(batch, heads, height * width, dim)
    kg, vg = kf[:, :, keys], vf[:, :, keys]  # (B, heads, N, k*k, D)
    qf = q.permute(0, 3, 1, 2, 4).reshape(batch, heads, height * width, 1, dim) * scale
    logits = (qf @ kg.transpose(-1, -2)).squeeze(-2)  # (B, heads, N, k*k)
    if rpb is not None:
        pos_h = torch.arange(height, device=q.device)
        pos_w = torch.arange(width, device=q.device)
        rel_h = (rows - pos_h[:, None]) // dilation + kernel - 1  # (H, k)
        rel_w = (cols - pos_w[:, None]) // dilation + kernel - 1
        logits = logits + rpb[:, rel_h[:, None, :, None], rel_w[None, :, None, :]].reshape(heads, height * width, -1)
    out = (logits.softmax(-1).unsqueeze(-2) @ vg).squeeze(-2)
    return out.view(batch, heads, height, width, dim).permute(0, 2, 3, 1, 4)


def flex_na2d_factory(problem: Problem, device: torch.device) -> Callable:
    """FlexAttention with NATTEN's neighbourhood as mask_mod (block mask) and RPB as score_mod."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    size, kernel, dilation = problem.size, problem.kernel, problem.dilation

    def group_coords(idx):
        group = idx % dilation
        group_len = (size - group + dilation - 1) // dilation
        pos = idx // dilation
        start = torch.clamp(torch.clamp(pos - kernel // 2, min=0), max=group_len - kernel)
        return group, pos, start

    def mask_mod(b, h, q_idx, kv_idx):
        qg_h, qp_h, qs_h = group_coords(q_idx // size)
        qg_w, qp_w, qs_w = group_coords(q_idx % size)
        kg_h, kp_h, _ = group_coords(kv_idx // size)
        kg_w, kp_w, _ = group_coords(kv_idx % size)
        return ((qg_h == kg_h) & (qg_w == kg_w) & (kp_h >= qs_h) & (kp_h < qs_h + kernel)
                & (kp_w >= qs_w) & (kp_w < qs_w + kernel))

    block_mask = create_block_mask(mask_mod, None, None, problem.tokens, problem.tokens, device=device)
    compiled = torch.compile(flex_attention, dynamic=False)

    def run(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], scale: float) -> Tensor:
        batch, height, width, heads, dim = q.shape
        qf, kf, vf = (t.permute(0, 3, 1, 2, 4).reshape(batch, heads, height * width, dim) for t in (q, k, v))
        score_mod = None
        if rpb is not None:
            def score_mod(score, b, h, q_idx, kv_idx):  # also runs on masked pairs: clamp the index
                rel_h = (kv_idx // size - q_idx // size) // dilation + kernel - 1
                rel_w = (kv_idx % size - q_idx % size) // dilation + kernel - 1
                return score + rpb[h, torch.clamp(rel_h, 0, 2 * kernel - 2), torch.clamp(rel_w, 0, 2 * kernel - 2)]
        out = compiled(qf, kf, vf, score_mod=score_mod, block_mask=block_mask, scale=scale)
        return out.view(batch, heads, height, width, dim).permute(0, 2, 3, 1, 4)

    return run


def dense_sdpa(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], scale: float) -> Tensor:
    """Dense attention over the same tokens (no mask): the per-FLOP ceiling."""
    batch, height, width, heads, dim = q.shape
    qf, kf, vf = (t.permute(0, 3, 1, 2, 4).reshape(batch, heads, height * width, dim) for t in (q, k, v))
    return F.scaled_dot_product_attention(qf, kf, vf, scale=scale)


# ----------------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------------

def _inputs(problem: Problem, device: torch.device, dtype: torch.dtype):
    torch.manual_seed(0)  # the same inputs for every implementation (checked against one reference)
    shape = (problem.batch, problem.size, problem.size, problem.heads, problem.head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    rpb = None
    if problem.rpb:
        rpb = (0.02 * torch.randn(problem.heads, 2 * problem.kernel - 1, 2 * problem.kernel - 1,
                                  device=device)).requires_grad_()
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
            if err > (1e-3 if dtype == torch.float32 else 3e-2):
                note = f'MISMATCH vs na2d: max err {err:.2e}'
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
        warmup, repeat = (1, 2) if device.type == 'cpu' or quick else (3, 10)
        ms = time_ms(step, device, warmup=warmup, repeat=repeat)
        peak = peak_mib(step, device)
        return ms, peak, note
    except (torch.cuda.OutOfMemoryError, MemoryError) as error:
        return None, None, 'out of memory'
    except Exception as error:  # noqa: BLE001 (one failing baseline must not stop an unattended GPU run)
        if 'out of memory' in str(error).lower():
            return None, None, 'out of memory'
        return None, None, f'not run: {type(error).__name__}: {str(error).splitlines()[0][:100]}'


def _implementations(problem: Problem, device: torch.device) -> dict[str, Callable]:
    kernel, dilation = problem.kernel, problem.dilation
    impls: dict[str, Callable] = {}
    if device.type == 'cuda' or triton_interpreted():  # interpreted: a CPU check of the suite itself
        impls['triton'] = lambda q, k, v, rpb, s: na2d(q, k, v, kernel, dilation, rpb=rpb, scale=s, backend='triton')
    if problem.unfused:
        impls['torch'] = lambda q, k, v, rpb, s: na2d(q, k, v, kernel, dilation, rpb=rpb, scale=s, backend='torch')
        impls['naive'] = lambda q, k, v, rpb, s: naive_na2d(q, k, v, kernel, dilation, rpb, s)
    return impls


def _problems(device: torch.device, quick: bool) -> list[Problem]:
    if quick:
        return [Problem(2, 14, 2, 32, 7, 1), Problem(2, 14, 2, 32, 3, 4)]
    if device.type == 'cuda':
        return nat_tiny(128) + nat_tiny(128, head_dim=64) + [FLUX]
    # CPU: fwd and fwd+bwd at batch 32 (the naive fwd+bwd at 128 needs ~40 GB), plus the 56x56 forward
    # at the NAT-Tiny batch of 128, where the memory target is stated
    return nat_tiny(32) + [Problem(128, 56, 2, 32, 7, 1)]


def run(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> list[Row]:
    rows: list[Row] = []
    for problem in _problems(device, quick):
        impls = _implementations(problem, device)
        extra = {}
        if device.type == 'cuda' or quick:
            extra['flex'] = flex_na2d_factory(problem, device)
            extra['sdpa'] = dense_sdpa
        modes = ['fwd'] if problem.batch == 128 and device.type == 'cpu' else ['fwd', 'fwd+bwd']
        for dtype in dtypes:
            reference = None
            if problem.unfused:
                q, k, v, rpb = _inputs(problem, device, dtype)
                with torch.no_grad():
                    reference = na2d(q, k, v, problem.kernel, problem.dilation, rpb=rpb, backend='torch')
                del q, k, v, rpb
            for mode in modes:
                measured = {}
                for name, impl in {**impls, **extra}.items():
                    keys = problem.tokens if name == 'sdpa' else problem.kernel ** 2
                    ms, peak, note = _measure(impl, problem, device, dtype, mode,
                                              None if name == 'sdpa' else reference, quick)
                    tflops = None if ms is None else attention_tflops(
                        problem.batch, problem.heads, problem.tokens, keys, problem.head_dim, ms, mode)
                    measured[name] = (ms, peak, tflops)
                    rows.append(Row('na2d', problem.name, name, str(dtype).replace('torch.', ''), mode, ms, peak,
                                    tflops, note))
                _compare(rows, measured)
    return rows


def _compare(rows: list[Row], measured: dict) -> None:
    """Append the target ratios to the notes of this (problem, dtype, mode)'s rows."""
    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return None if a is None or b is None else a / b

    recent = {r.impl: r for r in rows[-len(measured):]}
    if 'triton' in measured:
        speedup = ratio(measured.get('flex', (None,))[0], measured['triton'][0])
        of_sdpa = ratio(measured['triton'][2], measured.get('sdpa', (None, None, None))[2])
        parts = [f'{speedup:.2f}x flex' if speedup else '', f'{of_sdpa:.0%} of SDPA TFLOP/s' if of_sdpa else '']
        recent['triton'].note = '; '.join(p for p in [recent['triton'].note, *parts] if p)
    if 'torch' not in measured:
        return
    speedup = ratio(measured['naive'][0], measured['torch'][0])
    memory = ratio(measured['torch'][1], measured['naive'][1])
    parts = [f'{speedup:.2f}x naive speed' if speedup else '', f'{memory:.2f}x naive peak' if memory else '']
    recent['torch'].note = '; '.join(p for p in [recent['torch'].note, *parts] if p)
