"""Triton kernels of bi-level routing attention (BiFormer), gather-free, forward and backward.

Layouts and semantics are those of :mod:`visionattn.ops.routing` (which is the only caller): q, k, v are
``(batch, height, width, heads, head_dim)`` channels-last maps read in place through their strides (a
slice of a fused qkv projection is fine), the feature map is a ``grid_h x grid_w`` grid of
``REGION_H x REGION_W`` regions, and ``region_index`` ``(batch, regions, topk)`` routes every query
region to ``topk`` regions shared by all heads.

- Forward: one program per (query block of a region, region, batch x head). The ``topk * tokens`` keys
  of the routed regions are walked as one flat sequence, ``BLOCK_N`` keys at a time; key ``u`` is token
  ``u % tokens`` of routed region ``u // tokens``, whose address comes from ``region_index``. This
  keeps tiles full whatever the region size (a 2x2 region has 4 tokens, a tile 16 or more). Online
  softmax in float32 (exp2), the log-sum-exp is saved for the backward.
- Backward, dQ: the forward's walk twice, recomputing the probabilities from the log-sum-exp: a first
  pass sums delta = rowsum(dP * P) / rowsum(P) for the softmax's gradient (FlashAttention takes
  rowsum(dO * O) from the saved output instead, which in 16-bit dtypes is rounded, so where a saturated
  softmax makes ds = p * (dP - delta) cancel, the rounding became O(1) gradient errors:
  benchmarks/fuzz_ops.md), the second accumulates dQ; delta is written for the dK/dV kernel.
- Backward, dK and dV: one program per (key block of a region, region, batch x head) walks the queries
  of every region routed to it, from the inverse routing (a CSR list made with one sort), so dK and dV
  are written once, without atomics.

No copy of K or V is made: memory is that of q, k, v, the output and the per-token log-sum-exp,
whatever ``topk``. A key mask (``False`` = padded token) removes keys; a query whose routed keys are all
masked gets a zero output and zero gradients (log-sum-exp ``+inf``).

Non-finite inputs stay local (the rules are in :mod:`visionattn.ops.routing`): masked keys and padding
lanes are loaded as zeros, so no ``0 * NaN`` reaches a query that does not attend them; a query whose
softmax sum is NaN keeps a NaN log-sum-exp (not the ``+inf`` of a query without keys), so its backward
is NaN like its output; masked keys store zero dK and dV.

Triton 3.8's interpreter (``TRITON_INTERPRET=1``) multiplies bfloat16 ``tl.dot`` operands as their raw
uint16 bits, so under the interpreter bfloat16 operands are upcast to float32 before each dot
(``UPCAST_DOT``); compiled kernels use bfloat16 tensor-core dots.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # kernels may read only constexpr globals
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    if UPCAST_DOT:
        result = tl.dot(a.to(tl.float32), b.to(tl.float32))
    else:
        result = tl.dot(a, b, input_precision=PRECISION)
    return result


@triton.jit
def _token_offsets(region, token, s_y, s_x, GRID_W: tl.constexpr, REGION_H: tl.constexpr, REGION_W: tl.constexpr):
    """Memory offset of token ``token`` (row-major in its region) of region ``region`` (row-major)."""
    y = (region // GRID_W) * REGION_H + token // REGION_W
    x = (region % GRID_W) * REGION_W + token % REGION_W
    return y * s_y + x * s_x


@triton.jit
def _tile_ptrs(BASE, region, token, s_y, s_x, cols, GRID_W: tl.constexpr, REGION_H: tl.constexpr,
               REGION_W: tl.constexpr):
    """Pointers to the ``cols`` channels of the given tokens: a (tokens, channels) tile."""
    return BASE + _token_offsets(region, token, s_y, s_x, GRID_W, REGION_H, REGION_W)[:, None] + cols[None, :]


@triton.jit
def _load_tile(BASE, region, token, valid, s_y, s_x, cols, N_COLS: tl.constexpr, GRID_W: tl.constexpr,
               REGION_H: tl.constexpr, REGION_W: tl.constexpr):
    ptrs = _tile_ptrs(BASE, region, token, s_y, s_x, cols, GRID_W, REGION_H, REGION_W)
    return tl.load(ptrs, mask=valid[:, None] & (cols[None, :] < N_COLS), other=0.0)


@triton.jit
def _load_per_token(BASE, region, token, valid, s_y, s_x, other, GRID_W: tl.constexpr, REGION_H: tl.constexpr,
                    REGION_W: tl.constexpr):
    """A float32 value per token (log-sum-exp, delta)."""
    return tl.load(BASE + _token_offsets(region, token, s_y, s_x, GRID_W, REGION_H, REGION_W), mask=valid,
                   other=other)


@triton.jit
def _key_valid(MASK_B, region, token, valid, s_my, s_mx, HAS_MASK: tl.constexpr, GRID_W: tl.constexpr,
               REGION_H: tl.constexpr, REGION_W: tl.constexpr):
    """``valid`` and, with a key mask, not masked."""
    if HAS_MASK:
        offsets = _token_offsets(region, token, s_my, s_mx, GRID_W, REGION_H, REGION_W)
        valid = valid & (tl.load(MASK_B + offsets, mask=valid, other=0) != 0)
    return valid


@triton.jit
def _routed_keys(IDX_ROW, s_ik, MASK_B, s_my, s_mx, start, n_keys, HAS_MASK: tl.constexpr, GRID_W: tl.constexpr,
                 REGION_H: tl.constexpr, REGION_W: tl.constexpr, BLOCK_N: tl.constexpr):
    """Keys ``start .. start + BLOCK_N`` of a query region's routed keys, taken as one flat sequence:
    (region, token in region, valid) of each."""
    TOKENS: tl.constexpr = REGION_H * REGION_W
    key = start + tl.arange(0, BLOCK_N)
    valid = key < n_keys
    region = tl.load(IDX_ROW + (key // TOKENS) * s_ik, mask=valid, other=0)
    token = key % TOKENS
    valid = _key_valid(MASK_B, region, token, valid, s_my, s_mx, HAS_MASK, GRID_W, REGION_H, REGION_W)
    return region, token, valid


@triton.jit
def _program_tokens(heads, TOKENS: tl.constexpr, BLOCK: tl.constexpr):
    """This program's region, batch, head, block of the region's tokens and which of them exist."""
    b = (tl.program_id(2) // heads).to(tl.int64)
    token = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    return tl.program_id(1), b, tl.program_id(2) % heads, token, token < TOKENS


@triton.jit
def _forward_kernel(Q, K, V, IDX, MASK, OUT, LSE,
                    s_qb, s_qy, s_qx, s_qh, s_kb, s_ky, s_kx, s_kh, s_vb, s_vy, s_vx, s_vh,
                    s_ob, s_oy, s_ox, s_oh, s_lb, s_ly, s_lx, s_lh, s_ib, s_ir, s_ik, s_mb, s_my, s_mx,
                    heads, topk, qk_scale_log2,
                    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, GRID_W: tl.constexpr,
                    REGION_H: tl.constexpr, REGION_W: tl.constexpr, HAS_MASK: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                    PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    TOKENS: tl.constexpr = REGION_H * REGION_W
    region, b, h, q_tok, q_valid = _program_tokens(heads, TOKENS, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    K_BH, V_BH = K + b * s_kb + h * s_kh, V + b * s_vb + h * s_vh

    q = _load_tile(Q + b * s_qb + h * s_qh, region, q_tok, q_valid, s_qy, s_qx, d, HEAD_DIM, GRID_W, REGION_H,
                   REGION_W)
    m_i = tl.full([BLOCK_M], float('-inf'), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    for start in range(0, topk * TOKENS, BLOCK_N):
        k_region, k_tok, k_valid = _routed_keys(IDX + b * s_ib + region * s_ir, s_ik, MASK + b * s_mb, s_my, s_mx,
                                                start, topk * TOKENS, HAS_MASK, GRID_W, REGION_H, REGION_W, BLOCK_N)
        k = _load_tile(K_BH, k_region, k_tok, k_valid, s_ky, s_kx, d, HEAD_DIM, GRID_W, REGION_H, REGION_W)
        s = _dot(q, tl.trans(k), PRECISION, UPCAST_DOT) * qk_scale_log2
        s = tl.where(k_valid[None, :], s, float('-inf'))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        shift = tl.where(m_new == float('-inf'), 0.0, m_new)  # every key so far masked
        p = tl.exp2(s - shift[:, None])
        alpha = tl.exp2(m_i - shift)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = _load_tile(V_BH, k_region, k_tok, k_valid, s_vy, s_vx, dv, HEAD_DIM_V, GRID_W, REGION_H, REGION_W)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PRECISION, UPCAST_DOT)
        m_i = m_new

    attended = l_i != 0  # NaN (a non-finite input) counts as attended: NaN output and log-sum-exp
    out = acc / tl.where(attended, l_i, 1.0)[:, None]
    tl.store(_tile_ptrs(OUT + b * s_ob + h * s_oh, region, q_tok, s_oy, s_ox, dv, GRID_W, REGION_H, REGION_W),
             out.to(OUT.dtype.element_ty), mask=q_valid[:, None] & (dv[None, :] < HEAD_DIM_V))
    lse = tl.where(attended, (m_i + tl.log2(tl.where(attended, l_i, 1.0))) * LN2, float('inf'))
    tl.store(LSE + b * s_lb + h * s_lh + _token_offsets(region, q_tok, s_ly, s_lx, GRID_W, REGION_H, REGION_W), lse,
             mask=q_valid)


@triton.jit
def _routed_probs(q, do, lse_log2, IDX_ROW, s_ik, MASK_B, s_my, s_mx, K_BH, s_ky, s_kx, V_BH, s_vy, s_vx, d, dv,
                  start, n_keys, qk_scale_log2, HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
                  GRID_W: tl.constexpr, REGION_H: tl.constexpr, REGION_W: tl.constexpr, HAS_MASK: tl.constexpr,
                  BLOCK_N: tl.constexpr, PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """The dQ kernel's step over routed keys [start, start + BLOCK_N): the keys, the probabilities recomputed
    from the log-sum-exp, and dP = dO V^T."""
    k_region, k_tok, k_valid = _routed_keys(IDX_ROW, s_ik, MASK_B, s_my, s_mx, start, n_keys, HAS_MASK, GRID_W,
                                            REGION_H, REGION_W, BLOCK_N)
    k = _load_tile(K_BH, k_region, k_tok, k_valid, s_ky, s_kx, d, HEAD_DIM, GRID_W, REGION_H, REGION_W)
    v = _load_tile(V_BH, k_region, k_tok, k_valid, s_vy, s_vx, dv, HEAD_DIM_V, GRID_W, REGION_H, REGION_W)
    s = _dot(q, tl.trans(k), PRECISION, UPCAST_DOT) * qk_scale_log2
    p = tl.where(k_valid[None, :], tl.exp2(s - lse_log2[:, None]), 0.0)
    return k, p, _dot(do, tl.trans(v), PRECISION, UPCAST_DOT)


@triton.jit
def _backward_dq_kernel(Q, K, V, IDX, MASK, DO, LSE, DELTA, DQ,
                        s_qb, s_qy, s_qx, s_qh, s_kb, s_ky, s_kx, s_kh, s_vb, s_vy, s_vx, s_vh,
                        s_gb, s_gy, s_gx, s_gh, s_lb, s_ly, s_lx, s_lh, s_ib, s_ir, s_ik, s_mb, s_my, s_mx,
                        s_db, s_dy, s_dx, s_dh, s_xb, s_xy, s_xx, s_xh,
                        heads, topk, qk_scale_log2, scale,
                        HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, GRID_W: tl.constexpr,
                        REGION_H: tl.constexpr, REGION_W: tl.constexpr, HAS_MASK: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                        BLOCK_DV: tl.constexpr, PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    TOKENS: tl.constexpr = REGION_H * REGION_W
    region, b, h, q_tok, q_valid = _program_tokens(heads, TOKENS, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    K_BH, V_BH = K + b * s_kb + h * s_kh, V + b * s_vb + h * s_vh

    q = _load_tile(Q + b * s_qb + h * s_qh, region, q_tok, q_valid, s_qy, s_qx, d, HEAD_DIM, GRID_W, REGION_H,
                   REGION_W)
    do = _load_tile(DO + b * s_gb + h * s_gh, region, q_tok, q_valid, s_gy, s_gx, dv, HEAD_DIM_V, GRID_W, REGION_H,
                    REGION_W)
    lse_log2 = _load_per_token(LSE + b * s_lb + h * s_lh, region, q_tok, q_valid, s_ly, s_lx, float('inf'), GRID_W,
                               REGION_H, REGION_W) * LOG2E
    # delta = rowsum(p * dP) / rowsum(p) over the p recomputed here, not rowsum(dO * O) from the saved output: in
    # 16-bit dtypes that output is rounded (and its p was rounded before the PV dot), and where a saturated
    # softmax makes ds = p * (dP - delta) cancel, the difference became O(1) gradient errors; dividing by rowsum(p)
    # cancels the recomputed p's own error (its sum is 1 only up to the rounding of lse, ~1e-7 |lse|, which a
    # logit of 100 made a 1e-4 gradient error in float32). Written for the dK/dV kernel.
    p_dp = tl.zeros([BLOCK_M], tl.float32)
    p_sum = tl.zeros([BLOCK_M], tl.float32)
    for start in range(0, topk * TOKENS, BLOCK_N):
        k, p, dp = _routed_probs(q, do, lse_log2, IDX + b * s_ib + region * s_ir, s_ik, MASK + b * s_mb, s_my, s_mx,
                                 K_BH, s_ky, s_kx, V_BH, s_vy, s_vx, d, dv, start, topk * TOKENS, qk_scale_log2,
                                 HEAD_DIM, HEAD_DIM_V, GRID_W, REGION_H, REGION_W, HAS_MASK, BLOCK_N, PRECISION,
                                 UPCAST_DOT)
        p_dp += tl.sum(p * dp, 1)
        p_sum += tl.sum(p, 1)
    delta = p_dp / tl.where(p_sum == 0.0, 1.0, p_sum)  # no key attended: p = 0, delta unused
    tl.store(DELTA + b * s_db + h * s_dh + _token_offsets(region, q_tok, s_dy, s_dx, GRID_W, REGION_H, REGION_W),
             delta, mask=q_valid)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, topk * TOKENS, BLOCK_N):
        k, p, dp = _routed_probs(q, do, lse_log2, IDX + b * s_ib + region * s_ir, s_ik, MASK + b * s_mb, s_my, s_mx,
                                 K_BH, s_ky, s_kx, V_BH, s_vy, s_vx, d, dv, start, topk * TOKENS, qk_scale_log2,
                                 HEAD_DIM, HEAD_DIM_V, GRID_W, REGION_H, REGION_W, HAS_MASK, BLOCK_N, PRECISION,
                                 UPCAST_DOT)
        dq += _dot((p * (dp - delta[:, None])).to(k.dtype), k, PRECISION, UPCAST_DOT)
    tl.store(_tile_ptrs(DQ + b * s_xb + h * s_xh, region, q_tok, s_xy, s_xx, d, GRID_W, REGION_H, REGION_W),
             (dq * scale).to(DQ.dtype.element_ty), mask=q_valid[:, None] & (d[None, :] < HEAD_DIM))


@triton.jit
def _backward_dkdv_kernel(Q, K, V, QREGIONS, OFFSETS, MASK, DO, LSE, DELTA, DK, DV,
                          s_qb, s_qy, s_qx, s_qh, s_kb, s_ky, s_kx, s_kh, s_vb, s_vy, s_vx, s_vh,
                          s_gb, s_gy, s_gx, s_gh, s_lb, s_ly, s_lx, s_lh, s_rb, s_fb, s_mb, s_my, s_mx,
                          s_db, s_dy, s_dx, s_dh, s_xb, s_xy, s_xx, s_xh, s_wb, s_wy, s_wx, s_wh,
                          heads, qk_scale_log2, scale,
                          HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, GRID_W: tl.constexpr,
                          REGION_H: tl.constexpr, REGION_W: tl.constexpr, HAS_MASK: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                          BLOCK_DV: tl.constexpr, PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    TOKENS: tl.constexpr = REGION_H * REGION_W
    region, b, h, k_tok, k_in = _program_tokens(heads, TOKENS, BLOCK_N)
    k_valid = _key_valid(MASK + b * s_mb, region, k_tok, k_in, s_my, s_mx, HAS_MASK, GRID_W, REGION_H, REGION_W)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    Q_BH, DO_BH = Q + b * s_qb + h * s_qh, DO + b * s_gb + h * s_gh

    k = _load_tile(K + b * s_kb + h * s_kh, region, k_tok, k_in, s_ky, s_kx, d, HEAD_DIM, GRID_W, REGION_H, REGION_W)
    v = _load_tile(V + b * s_vb + h * s_vh, region, k_tok, k_in, s_vy, s_vx, dv, HEAD_DIM_V, GRID_W, REGION_H,
                   REGION_W)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dvacc = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    # the queries of every region routed to this one, as one flat sequence: entries [first, last)
    first = tl.load(OFFSETS + b * s_fb + region) * TOKENS
    last = tl.load(OFFSETS + b * s_fb + region + 1) * TOKENS
    for start in range(first, last, BLOCK_M):
        row = start + tl.arange(0, BLOCK_M)
        q_valid = row < last
        q_region = tl.load(QREGIONS + b * s_rb + row // TOKENS, mask=q_valid, other=0)
        q_tok = row % TOKENS
        q = _load_tile(Q_BH, q_region, q_tok, q_valid, s_qy, s_qx, d, HEAD_DIM, GRID_W, REGION_H, REGION_W)
        do = _load_tile(DO_BH, q_region, q_tok, q_valid, s_gy, s_gx, dv, HEAD_DIM_V, GRID_W, REGION_H, REGION_W)
        lse_log2 = _load_per_token(LSE + b * s_lb + h * s_lh, q_region, q_tok, q_valid, s_ly, s_lx, float('inf'),
                                   GRID_W, REGION_H, REGION_W) * LOG2E
        delta = _load_per_token(DELTA + b * s_db + h * s_dh, q_region, q_tok, q_valid, s_dy, s_dx, 0.0, GRID_W,
                                REGION_H, REGION_W)
        s = _dot(q, tl.trans(k), PRECISION, UPCAST_DOT) * qk_scale_log2
        p = tl.where(q_valid[:, None] & k_valid[None, :], tl.exp2(s - lse_log2[:, None]), 0.0)
        dvacc += _dot(tl.trans(p.to(do.dtype)), do, PRECISION, UPCAST_DOT)
        ds = p * (_dot(do, tl.trans(v), PRECISION, UPCAST_DOT) - delta[:, None])
        dk += _dot(tl.trans(ds.to(q.dtype)), q, PRECISION, UPCAST_DOT)
    # a masked key takes no part: zero gradients, even where 0 * NaN of a non-finite query reached them
    dk = tl.where(k_valid[:, None], dk * scale, 0.0)
    dvacc = tl.where(k_valid[:, None], dvacc, 0.0)
    tl.store(_tile_ptrs(DK + b * s_xb + h * s_xh, region, k_tok, s_xy, s_xx, d, GRID_W, REGION_H, REGION_W),
             dk.to(DK.dtype.element_ty), mask=k_in[:, None] & (d[None, :] < HEAD_DIM))
    tl.store(_tile_ptrs(DV + b * s_wb + h * s_wh, region, k_tok, s_wy, s_wx, dv, GRID_W, REGION_H, REGION_W),
             dvacc.to(DV.dtype.element_ty), mask=k_in[:, None] & (dv[None, :] < HEAD_DIM_V))


# ----------------------------------------------------------------------------------------------
# launchers
# ----------------------------------------------------------------------------------------------
def _dense_last_dim(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _strides4(x: torch.Tensor) -> tuple[int, int, int, int]:
    """Strides of (batch, y, x, head) of a (B, H, W, heads[, c]) tensor."""
    return tuple(x.stride())[:4]


def _mask_args(key_mask: Optional[torch.Tensor], fallback: torch.Tensor) -> tuple:
    if key_mask is None:
        return fallback, 0, 0, 0
    mask = key_mask.view(torch.uint8)
    return mask, 0 if mask.shape[0] == 1 else mask.stride(0), mask.stride(1), mask.stride(2)


class _Config:
    """Block sizes and compile-time constants shared by the three kernels of one problem."""

    def __init__(self, q: torch.Tensor, v: torch.Tensor, grid_h: int, grid_w: int, has_mask: bool,
                 interpreted: bool) -> None:
        height, width = q.shape[1:3]
        self.region_h, self.region_w = height // grid_h, width // grid_w
        self.tokens = self.region_h * self.region_w
        self.block_d = max(16, triton.next_power_of_2(q.shape[-1]))
        self.block_dv = max(16, triton.next_power_of_2(v.shape[-1]))
        self.block_region = min(64, max(16, triton.next_power_of_2(self.tokens)))  # a region's side of a tile
        self.block_flat = 64 if max(self.block_d, self.block_dv) <= 64 else 32  # the routed (flattened) side
        fp32_exact = q.dtype == torch.float32 and torch.get_float32_matmul_precision() == 'highest'
        self.constants = dict(
            HEAD_DIM=q.shape[-1], HEAD_DIM_V=v.shape[-1], GRID_W=grid_w, REGION_H=self.region_h,
            REGION_W=self.region_w, HAS_MASK=has_mask, BLOCK_D=self.block_d, BLOCK_DV=self.block_dv,
            PRECISION='ieee' if fp32_exact else 'tf32',
            UPCAST_DOT=interpreted and q.dtype == torch.bfloat16, num_warps=4)


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, region_index: torch.Tensor,
            key_mask: Optional[torch.Tensor], grid_h: int, grid_w: int, scale: float, interpreted: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Output ``(B, H, W, heads, head_dim_v)`` and float32 log-sum-exp ``(B, H, W, heads)``.

    ``interpreted``: the kernels run on Triton's CPU interpreter (the caller knows; kernels read no
    environment)."""
    q, k, v = _dense_last_dim(q), _dense_last_dim(k), _dense_last_dim(v)
    batch, height, width, heads = q.shape[:4]
    cfg = _Config(q, v, grid_h, grid_w, key_mask is not None, interpreted)
    out = torch.empty(*q.shape[:4], v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(q.shape[:4], dtype=torch.float32, device=q.device)
    index = region_index.contiguous()
    mask = _mask_args(key_mask, out)
    grid = (triton.cdiv(cfg.tokens, cfg.block_region), grid_h * grid_w, batch * heads)
    _forward_kernel[grid](
        q, k, v, index, mask[0], out, lse, *_strides4(q), *_strides4(k), *_strides4(v), *_strides4(out),
        *_strides4(lse), *index.stride(), *mask[1:], heads, index.shape[-1], scale * LOG2E.value,
        BLOCK_M=cfg.block_region, BLOCK_N=cfg.block_flat, **cfg.constants)
    return out, lse


def _inverse_routing(region_index: torch.Tensor, regions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every key region, the query regions routed to it: (batch, regions * topk) query regions
    sorted by key region, and (batch, regions + 1) offsets into them."""
    batch, _, topk = region_index.shape
    flat = region_index.reshape(batch, regions * topk).long()
    key_regions, order = torch.sort(flat, dim=1, stable=True)
    bounds = torch.arange(regions + 1, device=flat.device).expand(batch, -1).contiguous()
    offsets = torch.searchsorted(key_regions, bounds).to(torch.int32)
    return (order // topk).to(torch.int32), offsets


def backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, region_index: torch.Tensor,
             key_mask: Optional[torch.Tensor], lse: torch.Tensor, grid_h: int, grid_w: int,
             scale: float, interpreted: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv (contiguous, in the dtypes of q, k, v). The saved output is not needed: the dQ kernel
    recomputes the softmax's rowsum(dP * P) / rowsum(P) (``delta``) from the attention it recomputes."""
    q, k, v, grad_out = (_dense_last_dim(t) for t in (q, k, v, grad_out))
    batch, height, width, heads = q.shape[:4]
    regions = grid_h * grid_w
    cfg = _Config(q, v, grid_h, grid_w, key_mask is not None, interpreted)
    delta = torch.empty(lse.shape, dtype=torch.float32, device=q.device)  # the dQ kernel writes it
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    index = region_index.contiguous()
    mask = _mask_args(key_mask, dq)
    common = (*_strides4(q), *_strides4(k), *_strides4(v), *_strides4(grad_out), *_strides4(lse))

    grid = (triton.cdiv(cfg.tokens, cfg.block_region), regions, batch * heads)
    _backward_dq_kernel[grid](
        q, k, v, index, mask[0], grad_out, lse, delta, dq, *common, *index.stride(), *mask[1:],
        *_strides4(delta), *_strides4(dq), heads, index.shape[-1], scale * LOG2E.value, scale,
        BLOCK_M=cfg.block_region, BLOCK_N=cfg.block_flat, **cfg.constants)

    query_regions, offsets = _inverse_routing(index, regions)
    _backward_dkdv_kernel[grid](
        q, k, v, query_regions, offsets, mask[0], grad_out, lse, delta, dk, dv, *common,
        query_regions.stride(0), offsets.stride(0), *mask[1:], *_strides4(delta), *_strides4(dk), *_strides4(dv),
        heads, scale * LOG2E.value, scale,
        BLOCK_M=cfg.block_flat, BLOCK_N=cfg.block_region, **cfg.constants)
    return dq, dk, dv
