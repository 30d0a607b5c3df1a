"""Fused 2-D neighbourhood attention in Triton: forward and backward, dilation and relative positional bias.

Called only through :func:`visionattn.ops.na2d` (which checks the arguments and documents the
semantics and layout). Tensors are ``(batch, height, width, heads, head_dim)`` with any strides.

Tiling (FlashAttention-style, "tile-dense" like NATTEN's fused kernels): a program owns a
``BLOCK_QH x BLOCK_QW`` tile of queries of one dilation group, in group coordinates, so dilation is
only a stride. Because window starts are monotone in the query position, the windows of the tile's
queries all lie in one rectangle of keys, which the program walks in ``BLOCK_KH x BLOCK_KW`` chunks:
one ``tl.dot`` per chunk, the neighbourhood (and the RPB lookup) as a mask, an online softmax in
fp32; the attention matrix never reaches global memory. The backward recomputes the probabilities
from the saved log-sum-exp: one kernel per query tile for dQ (and dRPB, accumulated per query and
window tap, then folded into the bias table), one per key tile for dK and dV, whose queries form a
rectangle too (the inverse neighbourhood).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ['forward', 'backward']

_LOG2E = 1.4426950408889634


@triton.jit
def _mma(a, b, PRECISION: tl.constexpr, FP32_DOT: tl.constexpr):
    """tl.dot with fp32 accumulation; FP32_DOT multiplies in fp32 (Triton 3.8's interpreter gets bf16 wrong)."""
    if FP32_DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision='ieee')
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _window_start(pos, group_len, kernel):
    """First key (group coordinates) of the window of query ``pos``: centred, shifted inside at borders."""
    return tl.minimum(tl.maximum(pos - kernel // 2, 0), group_len - kernel)


@triton.jit
def _tile_coords(tile_id, height, width, dil_h, dil_w, tiles_h, tiles_w,
                 BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """Group, group lengths and the group coordinates (flattened BLOCK_H*BLOCK_W) of one tile."""
    per_row = dil_w * tiles_w
    tile_row, tile_col = tile_id // per_row, tile_id % per_row
    group_h, tile_h = tile_row // tiles_h, tile_row % tiles_h
    group_w, tile_w = tile_col // tiles_w, tile_col % tiles_w
    len_h = (height - group_h + dil_h - 1) // dil_h
    len_w = (width - group_w + dil_w - 1) // dil_w
    offs = tl.arange(0, BLOCK_H * BLOCK_W)
    rows = tile_h * BLOCK_H + offs // BLOCK_W
    cols = tile_w * BLOCK_W + offs % BLOCK_W
    return group_h, group_w, len_h, len_w, tile_h * BLOCK_H, tile_w * BLOCK_W, rows, cols


@triton.jit
def _query_tile_geometry(tile_id, height, width, dil_h, dil_w, tiles_h, tiles_w, kernel_h, kernel_w,
                BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """A query tile, its queries' window starts, and the key rectangle [lo, hi] holding all its windows."""
    group_h, group_w, len_h, len_w, first_h, first_w, rows, cols = _tile_coords(
        tile_id, height, width, dil_h, dil_w, tiles_h, tiles_w, BLOCK_H, BLOCK_W)
    valid = (rows < len_h) & (cols < len_w)
    start_h, start_w = _window_start(rows, len_h, kernel_h), _window_start(cols, len_w, kernel_w)
    lo_h, lo_w = _window_start(first_h, len_h, kernel_h), _window_start(first_w, len_w, kernel_w)
    hi_h = _window_start(tl.minimum(first_h + BLOCK_H, len_h) - 1, len_h, kernel_h) + kernel_h - 1
    hi_w = _window_start(tl.minimum(first_w + BLOCK_W, len_w) - 1, len_w, kernel_w) + kernel_w - 1
    return group_h, group_w, rows, cols, valid, start_h, start_w, lo_h, lo_w, hi_h, hi_w


@triton.jit
def _load_rows(base, rows, cols, group_h, group_w, dil_h, dil_w, stride_h, stride_w, stride_d, valid,
               head_dim, BLOCK_D: tl.constexpr):
    """(len(rows), BLOCK_D) block of a (H, W, D) slice at group coordinates (rows, cols)."""
    d = tl.arange(0, BLOCK_D)
    ptrs = (base + (group_h + rows * dil_h)[:, None] * stride_h + (group_w + cols * dil_w)[:, None] * stride_w
            + d[None, :] * stride_d)
    return tl.load(ptrs, mask=valid[:, None] & (d[None, :] < head_dim), other=0.)


@triton.jit
def _scores(q_rows, q_cols, q_start_h, q_start_w, k_rows, k_cols, k_valid, s, rpb_base, rpb_stride_h,
            rpb_stride_w, kernel_h, kernel_w, HAS_RPB: tl.constexpr):
    """Masked logits (log2 units) of a (queries, keys) block: -inf outside each query's window."""
    in_window = ((k_rows[None, :] >= q_start_h[:, None]) & (k_rows[None, :] < q_start_h[:, None] + kernel_h)
                 & (k_cols[None, :] >= q_start_w[:, None]) & (k_cols[None, :] < q_start_w[:, None] + kernel_w)
                 & k_valid[None, :])
    if HAS_RPB:
        bias_ptrs = (rpb_base + (k_rows[None, :] - q_rows[:, None] + kernel_h - 1) * rpb_stride_h
                     + (k_cols[None, :] - q_cols[:, None] + kernel_w - 1) * rpb_stride_w)
        bias = tl.load(bias_ptrs, mask=in_window, other=0.).to(tl.float32)
        s += tl.where(in_window, bias, 0.) * 1.4426950408889634  # the interpreter's masked bf16 lanes are not 0
    return tl.where(in_window, s, float('-inf')), in_window


@triton.jit
def _fwd_kernel(Q, K, V, RPB, OUT, LSE,
                stride_qb, stride_qh, stride_qw, stride_qn, stride_qd,
                stride_kb, stride_kh, stride_kw, stride_kn, stride_kd,
                stride_vb, stride_vh, stride_vw, stride_vn, stride_vd,
                stride_ob, stride_oh, stride_ow, stride_on, stride_od,
                stride_lb, stride_ln, stride_lh, stride_lw,
                stride_rn, stride_rh, stride_rw,
                heads, height, width, head_dim, scale_log2,
                kernel_h, kernel_w, dil_h, dil_w, tiles_h, tiles_w,
                HAS_RPB: tl.constexpr, BLOCK_QH: tl.constexpr, BLOCK_QW: tl.constexpr,
                BLOCK_KH: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_D: tl.constexpr,
                PRECISION: tl.constexpr, FP32_DOT: tl.constexpr):
    batch_head = tl.program_id(1)
    b, n = (batch_head // heads).to(tl.int64), batch_head % heads
    group_h, group_w, rows, cols, valid, start_h, start_w, lo_h, lo_w, hi_h, hi_w = _query_tile_geometry(
        tl.program_id(0), height, width, dil_h, dil_w, tiles_h, tiles_w, kernel_h, kernel_w, BLOCK_QH, BLOCK_QW)

    q = _load_rows(Q + b * stride_qb + n * stride_qn, rows, cols, group_h, group_w, dil_h, dil_w,
                   stride_qh, stride_qw, stride_qd, valid, head_dim, BLOCK_D)
    rpb_base = RPB + n * stride_rn
    m_i = tl.full([BLOCK_QH * BLOCK_QW], float('-inf'), tl.float32)
    l_i = tl.zeros([BLOCK_QH * BLOCK_QW], tl.float32)
    acc = tl.zeros([BLOCK_QH * BLOCK_QW, BLOCK_D], tl.float32)
    k_offs = tl.arange(0, BLOCK_KH * BLOCK_KW)
    for r in range(lo_h, hi_h + 1, BLOCK_KH):
        for c in range(lo_w, hi_w + 1, BLOCK_KW):
            k_rows, k_cols = r + k_offs // BLOCK_KW, c + k_offs % BLOCK_KW
            k_valid = (k_rows <= hi_h) & (k_cols <= hi_w)
            k = _load_rows(K + b * stride_kb + n * stride_kn, k_rows, k_cols, group_h, group_w, dil_h, dil_w,
                           stride_kh, stride_kw, stride_kd, k_valid, head_dim, BLOCK_D)
            v = _load_rows(V + b * stride_vb + n * stride_vn, k_rows, k_cols, group_h, group_w, dil_h, dil_w,
                           stride_vh, stride_vw, stride_vd, k_valid, head_dim, BLOCK_D)
            s = _mma(q, tl.trans(k), PRECISION, FP32_DOT) * scale_log2
            s, _ = _scores(rows, cols, start_h, start_w, k_rows, k_cols, k_valid, s, rpb_base, stride_rh,
                           stride_rw, kernel_h, kernel_w, HAS_RPB)
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float('-inf'), 0., m_new)  # a row may see no key of this chunk
            p = tl.exp2(s - m_safe[:, None])
            alpha = tl.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + _mma(p.to(v.dtype), v, PRECISION, FP32_DOT)
            m_i = m_new
    acc = acc / l_i[:, None]
    d = tl.arange(0, BLOCK_D)
    pos_h, pos_w = group_h + rows * dil_h, group_w + cols * dil_w
    out_ptrs = (OUT + b * stride_ob + n * stride_on + pos_h[:, None] * stride_oh + pos_w[:, None] * stride_ow
                + d[None, :] * stride_od)
    tl.store(out_ptrs, acc.to(OUT.dtype.element_ty), mask=valid[:, None] & (d[None, :] < head_dim))
    lse_ptrs = LSE + b * stride_lb + n * stride_ln + pos_h * stride_lh + pos_w * stride_lw
    tl.store(lse_ptrs, (m_i + tl.log2(l_i)) * 0.6931471805599453, mask=valid)


@triton.jit
def _bwd_dq_kernel(Q, K, V, RPB, DO, LSE, DELTA, DQ, DBIAS,
                   stride_qb, stride_qh, stride_qw, stride_qn, stride_qd,
                   stride_kb, stride_kh, stride_kw, stride_kn, stride_kd,
                   stride_vb, stride_vh, stride_vw, stride_vn, stride_vd,
                   stride_dob, stride_doh, stride_dow, stride_don, stride_dod,
                   stride_gb, stride_gh, stride_gw, stride_gn, stride_gd,
                   stride_lb, stride_ln, stride_lh, stride_lw,
                   stride_rn, stride_rh, stride_rw,
                   heads, height, width, head_dim, scale, scale_log2,
                   kernel_h, kernel_w, dil_h, dil_w, tiles_h, tiles_w,
                   HAS_RPB: tl.constexpr, BLOCK_QH: tl.constexpr, BLOCK_QW: tl.constexpr,
                   BLOCK_KH: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_D: tl.constexpr,
                   PRECISION: tl.constexpr, FP32_DOT: tl.constexpr):
    """dQ of a query tile; with RPB also dS summed into DBIAS[head, query, tap] (atomically over batch)."""
    batch_head = tl.program_id(1)
    b, n = (batch_head // heads).to(tl.int64), batch_head % heads
    group_h, group_w, rows, cols, valid, start_h, start_w, lo_h, lo_w, hi_h, hi_w = _query_tile_geometry(
        tl.program_id(0), height, width, dil_h, dil_w, tiles_h, tiles_w, kernel_h, kernel_w, BLOCK_QH, BLOCK_QW)

    q = _load_rows(Q + b * stride_qb + n * stride_qn, rows, cols, group_h, group_w, dil_h, dil_w,
                   stride_qh, stride_qw, stride_qd, valid, head_dim, BLOCK_D)
    do = _load_rows(DO + b * stride_dob + n * stride_don, rows, cols, group_h, group_w, dil_h, dil_w,
                    stride_doh, stride_dow, stride_dod, valid, head_dim, BLOCK_D)
    pos_h, pos_w = group_h + rows * dil_h, group_w + cols * dil_w
    row_offs = b * stride_lb + n * stride_ln + pos_h * stride_lh + pos_w * stride_lw
    lse = tl.load(LSE + row_offs, mask=valid, other=0.) * 1.4426950408889634
    delta = tl.load(DELTA + row_offs, mask=valid, other=0.)
    rpb_base = RPB + n * stride_rn
    taps = kernel_h * kernel_w
    dbias_rows = DBIAS + (n * height * width + pos_h * width + pos_w) * taps
    dq = tl.zeros([BLOCK_QH * BLOCK_QW, BLOCK_D], tl.float32)
    k_offs = tl.arange(0, BLOCK_KH * BLOCK_KW)
    for r in range(lo_h, hi_h + 1, BLOCK_KH):
        for c in range(lo_w, hi_w + 1, BLOCK_KW):
            k_rows, k_cols = r + k_offs // BLOCK_KW, c + k_offs % BLOCK_KW
            k_valid = (k_rows <= hi_h) & (k_cols <= hi_w)
            k = _load_rows(K + b * stride_kb + n * stride_kn, k_rows, k_cols, group_h, group_w, dil_h, dil_w,
                           stride_kh, stride_kw, stride_kd, k_valid, head_dim, BLOCK_D)
            v = _load_rows(V + b * stride_vb + n * stride_vn, k_rows, k_cols, group_h, group_w, dil_h, dil_w,
                           stride_vh, stride_vw, stride_vd, k_valid, head_dim, BLOCK_D)
            s = _mma(q, tl.trans(k), PRECISION, FP32_DOT) * scale_log2
            s, in_window = _scores(rows, cols, start_h, start_w, k_rows, k_cols, k_valid, s, rpb_base,
                                   stride_rh, stride_rw, kernel_h, kernel_w, HAS_RPB)
            p = tl.exp2(tl.where(valid[:, None], s - lse[:, None], float('-inf')))
            dp = _mma(do, tl.trans(v), PRECISION, FP32_DOT)
            ds = p * (dp - delta[:, None])
            dq += _mma(ds.to(k.dtype), k, PRECISION, FP32_DOT)
            if HAS_RPB:
                tap = (k_rows[None, :] - start_h[:, None]) * kernel_w + (k_cols[None, :] - start_w[:, None])
                tl.atomic_add(dbias_rows[:, None] + tap, ds, mask=in_window & valid[:, None])
    d = tl.arange(0, BLOCK_D)
    dq_ptrs = (DQ + b * stride_gb + n * stride_gn + pos_h[:, None] * stride_gh + pos_w[:, None] * stride_gw
               + d[None, :] * stride_gd)
    tl.store(dq_ptrs, (dq * scale).to(DQ.dtype.element_ty), mask=valid[:, None] & (d[None, :] < head_dim))


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, RPB, DO, LSE, DELTA, DK, DV,
                     stride_qb, stride_qh, stride_qw, stride_qn, stride_qd,
                     stride_kb, stride_kh, stride_kw, stride_kn, stride_kd,
                     stride_vb, stride_vh, stride_vw, stride_vn, stride_vd,
                     stride_dob, stride_doh, stride_dow, stride_don, stride_dod,
                     stride_gb, stride_gh, stride_gw, stride_gn, stride_gd,
                     stride_lb, stride_ln, stride_lh, stride_lw,
                     stride_rn, stride_rh, stride_rw,
                     heads, height, width, head_dim, scale, scale_log2,
                     kernel_h, kernel_w, dil_h, dil_w, tiles_h, tiles_w,
                     HAS_RPB: tl.constexpr, BLOCK_KH: tl.constexpr, BLOCK_KW: tl.constexpr,
                     BLOCK_QH: tl.constexpr, BLOCK_QW: tl.constexpr, BLOCK_D: tl.constexpr,
                     PRECISION: tl.constexpr, FP32_DOT: tl.constexpr):
    """dK and dV of a key tile, walking the rectangle of queries whose windows can hold its keys."""
    batch_head = tl.program_id(1)
    b, n = (batch_head // heads).to(tl.int64), batch_head % heads
    group_h, group_w, len_h, len_w, first_h, first_w, k_rows, k_cols = _tile_coords(
        tl.program_id(0), height, width, dil_h, dil_w, tiles_h, tiles_w, BLOCK_KH, BLOCK_KW)
    k_valid = (k_rows < len_h) & (k_cols < len_w)
    # queries whose window reaches the keys [first, last]: from the first query whose window ends at or
    # after `first` to the last whose window starts at or before `last` (windows move monotonically)
    last_h, last_w = tl.minimum(first_h + BLOCK_KH, len_h) - 1, tl.minimum(first_w + BLOCK_KW, len_w) - 1
    lo_h = tl.where(first_h < kernel_h, 0, first_h - kernel_h // 2)
    lo_w = tl.where(first_w < kernel_w, 0, first_w - kernel_w // 2)
    hi_h = tl.where(last_h >= len_h - kernel_h, len_h - 1, last_h + kernel_h // 2)
    hi_w = tl.where(last_w >= len_w - kernel_w, len_w - 1, last_w + kernel_w // 2)

    k = _load_rows(K + b * stride_kb + n * stride_kn, k_rows, k_cols, group_h, group_w, dil_h, dil_w,
                   stride_kh, stride_kw, stride_kd, k_valid, head_dim, BLOCK_D)
    v = _load_rows(V + b * stride_vb + n * stride_vn, k_rows, k_cols, group_h, group_w, dil_h, dil_w,
                   stride_vh, stride_vw, stride_vd, k_valid, head_dim, BLOCK_D)
    rpb_base = RPB + n * stride_rn
    dk = tl.zeros([BLOCK_KH * BLOCK_KW, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_KH * BLOCK_KW, BLOCK_D], tl.float32)
    q_offs = tl.arange(0, BLOCK_QH * BLOCK_QW)
    for r in range(lo_h, hi_h + 1, BLOCK_QH):
        for c in range(lo_w, hi_w + 1, BLOCK_QW):
            rows, cols = r + q_offs // BLOCK_QW, c + q_offs % BLOCK_QW
            valid = (rows <= hi_h) & (cols <= hi_w)
            q = _load_rows(Q + b * stride_qb + n * stride_qn, rows, cols, group_h, group_w, dil_h, dil_w,
                           stride_qh, stride_qw, stride_qd, valid, head_dim, BLOCK_D)
            do = _load_rows(DO + b * stride_dob + n * stride_don, rows, cols, group_h, group_w, dil_h, dil_w,
                            stride_doh, stride_dow, stride_dod, valid, head_dim, BLOCK_D)
            row_offs = (b * stride_lb + n * stride_ln + (group_h + rows * dil_h) * stride_lh
                        + (group_w + cols * dil_w) * stride_lw)
            lse = tl.load(LSE + row_offs, mask=valid, other=0.) * 1.4426950408889634
            delta = tl.load(DELTA + row_offs, mask=valid, other=0.)
            start_h, start_w = _window_start(rows, len_h, kernel_h), _window_start(cols, len_w, kernel_w)
            # scores of (queries, keys), as in the forward; queries outside the map see no key
            s = _mma(q, tl.trans(k), PRECISION, FP32_DOT) * scale_log2
            s, _ = _scores(rows, cols, start_h, start_w, k_rows, k_cols, k_valid, s, rpb_base, stride_rh,
                           stride_rw, kernel_h, kernel_w, HAS_RPB)
            p = tl.exp2(tl.where(valid[:, None], s - lse[:, None], float('-inf')))
            dv += _mma(tl.trans(p.to(do.dtype)), do, PRECISION, FP32_DOT)
            dp = _mma(do, tl.trans(v), PRECISION, FP32_DOT)
            ds = p * (dp - delta[:, None])
            dk += _mma(tl.trans(ds.to(q.dtype)), q, PRECISION, FP32_DOT)
    d = tl.arange(0, BLOCK_D)
    pos_h, pos_w = group_h + k_rows * dil_h, group_w + k_cols * dil_w
    mask = k_valid[:, None] & (d[None, :] < head_dim)
    offs = (b * stride_gb + n * stride_gn + pos_h[:, None] * stride_gh + pos_w[:, None] * stride_gw
            + d[None, :] * stride_gd)
    tl.store(DK + offs, (dk * scale).to(DK.dtype.element_ty), mask=mask)
    tl.store(DV + offs, dv.to(DV.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------

def _pow2(x: int) -> int:
    return triton.next_power_of_2(x)


def _query_tile(kernel_w: int) -> tuple[int, int]:
    """Query tile (rows, cols) of the forward and dQ kernels: about 38% of the computed logits are
    in a window at kernel 7 (a 2-row x 8 tile sees 8 rows x 16 columns of keys)."""
    return (2, 8) if kernel_w <= 9 else (2, 16)


def _key_chunk(query_cols: int, kernel_w: int) -> tuple[int, int]:
    cols = min(32, _pow2(query_cols + kernel_w - 1))
    return max(1, 32 // cols), cols


def _block_d(head_dim: int) -> int:
    return max(16, _pow2(head_dim))


def _precision(dtype: torch.dtype, interpreted: bool) -> dict:
    """fp32 inputs use TF32 only where torch's own matmuls would (``torch.set_float32_matmul_precision``);
    under Triton's interpreter bf16 dots multiply in fp32 (its bf16 dot is wrong)."""
    ieee = dtype == torch.float32 and torch.get_float32_matmul_precision() == 'highest'
    return dict(PRECISION='ieee' if ieee else 'tf32', FP32_DOT=dtype == torch.bfloat16 and interpreted)


def _geometry(q: Tensor, kernel: Sequence[int], dilation: Sequence[int], tile: tuple[int, int]):
    _, height, width, _, _ = q.shape
    tiles_h = triton.cdiv(triton.cdiv(height, dilation[0]), tile[0])
    tiles_w = triton.cdiv(triton.cdiv(width, dilation[1]), tile[1])
    return (dilation[0] * tiles_h * dilation[1] * tiles_w, q.shape[0] * q.shape[3]), tiles_h, tiles_w


def _strides5(x: Tensor) -> tuple[int, ...]:
    return tuple(x.stride())


def _rpb_args(rpb: Optional[Tensor], q: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
    return (rpb, tuple(rpb.stride())) if rpb is not None else (q, (0, 0, 0))


def forward(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], kernel: Sequence[int],
            dilation: Sequence[int], scale: float, interpreted: bool = False) -> tuple[Tensor, Tensor]:
    """out (B, H, W, heads, D) contiguous in q's dtype and the log-sum-exp (B, heads, H, W) in float32.

    ``interpreted``: the kernels run on Triton's CPU interpreter (the caller knows; kernels read no
    environment)."""
    batch, height, width, heads, head_dim = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, height, width), dtype=torch.float32, device=q.device)
    tile = _query_tile(kernel[1])
    chunk = _key_chunk(tile[1], kernel[1])
    grid, tiles_h, tiles_w = _geometry(q, kernel, dilation, tile)
    rpb_t, rpb_strides = _rpb_args(rpb, q)
    _fwd_kernel[grid](
        q, k, v, rpb_t, out, lse, *_strides5(q), *_strides5(k), *_strides5(v), *_strides5(out),
        *lse.stride(), *rpb_strides, heads, height, width, head_dim, scale * _LOG2E,
        kernel[0], kernel[1], dilation[0], dilation[1], tiles_h, tiles_w,
        HAS_RPB=rpb is not None, BLOCK_QH=tile[0], BLOCK_QW=tile[1], BLOCK_KH=chunk[0], BLOCK_KW=chunk[1],
        BLOCK_D=_block_d(head_dim), **_precision(q.dtype, interpreted), num_warps=4)
    return out, lse


def _bias_index(length: int, kernel: int, dilation: int, device: torch.device) -> Tensor:
    """rpb index (along one axis) of tap 0 of each query's window: window start - query + k - 1."""
    pos = torch.arange(length, device=device)
    group, group_pos = pos % dilation, pos // dilation
    group_len = (length - group + dilation - 1) // dilation
    start = torch.minimum((group_pos - kernel // 2).clamp(min=0), group_len - kernel)
    return start - group_pos + kernel - 1


def backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], out: Tensor, lse: Tensor,
             kernel: Sequence[int], dilation: Sequence[int], scale: float,
             interpreted: bool = False) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """dQ, dK, dV (contiguous, q's dtype, so they share strides) and dRPB (rpb's dtype, None without rpb)."""
    batch, height, width, heads, head_dim = q.shape
    lse = lse.contiguous()
    delta = (grad_out.float() * out.float()).sum(-1).permute(0, 3, 1, 2).contiguous()  # like lse
    grad_q, grad_k, grad_v = (torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    rpb_t, rpb_strides = _rpb_args(rpb, q)
    dbias = (torch.zeros((heads, height, width, kernel[0], kernel[1]), dtype=torch.float32, device=q.device)
             if rpb is not None else lse)
    common = (*_strides5(q), *_strides5(k), *_strides5(v), *_strides5(grad_out), *_strides5(grad_q),
              *lse.stride(), *rpb_strides,
              heads, height, width, head_dim, scale, scale * _LOG2E, kernel[0], kernel[1], dilation[0],
              dilation[1])
    tile = _query_tile(kernel[1])
    chunk = _key_chunk(tile[1], kernel[1])
    grid, tiles_h, tiles_w = _geometry(q, kernel, dilation, tile)
    _bwd_dq_kernel[grid](
        q, k, v, rpb_t, grad_out, lse, delta, grad_q, dbias, *common, tiles_h, tiles_w,
        HAS_RPB=rpb is not None, BLOCK_QH=tile[0], BLOCK_QW=tile[1], BLOCK_KH=chunk[0], BLOCK_KW=chunk[1],
        BLOCK_D=_block_d(head_dim), **_precision(q.dtype, interpreted), num_warps=4)
    # key tiles: the transpose of the query tiling (queries of a key tile span its size + k - 1 columns)
    key_tile = tile
    query_chunk = _key_chunk(key_tile[1], kernel[1])
    grid, tiles_h, tiles_w = _geometry(q, kernel, dilation, key_tile)
    _bwd_dkdv_kernel[grid](
        q, k, v, rpb_t, grad_out, lse, delta, grad_k, grad_v, *common, tiles_h, tiles_w,
        HAS_RPB=rpb is not None, BLOCK_KH=key_tile[0], BLOCK_KW=key_tile[1], BLOCK_QH=query_chunk[0],
        BLOCK_QW=query_chunk[1], BLOCK_D=_block_d(head_dim), **_precision(q.dtype, interpreted), num_warps=4)
    grad_rpb = None
    if rpb is not None:  # fold the per-(query, tap) sums into the (2k_h - 1, 2k_w - 1) table
        rows = _bias_index(height, kernel[0], dilation[0], q.device)[:, None] + torch.arange(kernel[0], device=q.device)
        cols = _bias_index(width, kernel[1], dilation[1], q.device)[:, None] + torch.arange(kernel[1], device=q.device)
        index = rows[:, None, :, None] * (2 * kernel[1] - 1) + cols[None, :, None, :]  # (H, W, k_h, k_w)
        grad_rpb = torch.zeros((heads, rpb[0].numel()), dtype=torch.float32, device=q.device)
        grad_rpb.index_add_(1, index.reshape(-1), dbias.view(heads, -1))
        grad_rpb = grad_rpb.view(rpb.shape).to(rpb.dtype)
    return grad_q, grad_k, grad_v, grad_rpb
