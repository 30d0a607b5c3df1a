"""Fused N-D neighbourhood attention in Triton (GNA: kernel size, dilation, stride, per-axis causal; RPB).

Called only by :mod:`visionattn.ops` (which checks the arguments and documents the semantics); the
contract is ``SPEC_NA.md``. One 3-D implementation: tensors are ``(batch, X, Y, Z, heads, head_dim)``
with any strides, and 1-D/2-D callers add unit leading axes (kernel 1, dilation 1, stride 1).

Window rule (NATTEN >= 0.20, per axis, in dilation-group coordinates: position ``i`` of an axis of
length ``L`` is ``ip = i // d`` of group ``i % d``, whose length is ``Lg = ceil((L - i % d) / d)``):
the queries of one stride group ``ip // s`` share the window of their leader; keys ``[start, end)``:

- non-causal: leader ``min(ip // s * s + s // 2, Lg - 1)``, ``start = clamp(leader - k // 2, 0, Lg - k)``,
  ``end = start + k`` (the window is shifted inside at the borders, never truncated);
- causal: leader ``min(ip // s * s + s - 1, Lg - 1)``, ``start = max(leader - k + 1, 0)``,
  ``end = ip + 1`` (the window ends at the query).

Accepted (the ops check it, as NATTEN >= 0.20 does): per axis ``1 <= s <= k`` and ``L >= k * d``; any
``k >= 1`` (even kernels too; NATTEN asks ``k >= 2`` on real axes, ``k = 1`` is a unit axis); RPB only
with stride 1 and no causal axis, its bias of key ``kp`` for query ``ip`` at ``kp - ip + k - 1`` per axis.

Tiling (FlashAttention-style, tile-dense like NATTEN's fused kernels): a program owns a box of query
lanes ``BLOCK_QX x BLOCK_QY x BLOCK_QZ`` of one dilation group. Window starts and ends are monotone in
the query position, so the windows of a box of queries lie in one box of keys (with stride, a stride
group shares one window; with causal, windows end at the query), which the program walks in chunks of
``BLOCK_KX x BLOCK_KY x BLOCK_KZ`` keys (one flat loop, which Triton can pipeline): one ``tl.dot`` per
chunk, the windows (and the RPB lookup) as a mask, an online softmax in fp32; the attention matrix never
reaches global memory. Along an axis with stride ``s <= BLOCK``, a tile owns whole stride groups
(``BLOCK - BLOCK % s`` positions; the remaining lanes idle): at ``s = k`` a tile of one stride group per
axis sees exactly its window, so every (query, key) pair it computes is in a window (the GNA paper's
point); only the padding of lanes to powers of two idles. The backward recomputes the probabilities
from the saved log-sum-exp: one kernel per query tile for dQ (and dRPB, accumulated per query and
window tap, then folded into the table on the host), one per key tile for dK and dV, walking the box of
queries whose windows can hold its keys (``_query_range``: the window rule inverted).

Non-finite inputs stay local: a NaN/inf in q, k or v reaches exactly the queries (and gradient rows)
that the per-query formulas give, with no host sync. Logits outside a window are selected out
(``tl.where``), never added ``-inf``; and where a dot would multiply a zero probability (or gradient) of
a lane outside a window with a non-finite row of V, K, Q or dO (0 * inf = NaN), that row enters the dot
as zeros and a per-row NaN is added instead to exactly the in-window lanes of the other operand
(``_split_nonfinite``). Cost, by reasoning (not measured: no GPU yet): per key chunk the forward adds
about 4 ALU operations per element of the V block (x * 0, a row sum, a compare, a select) and 2 per
logit (a select and an add), on data already in registers and with no extra memory traffic, against
about 20 per logit already spent on the mask and the online softmax: at most ~10-15 % more ALU work
where the kernel is ALU-bound (small head_dim, where masking dominates), about nothing where it is
memory-bound; the backward adds the same per K block (dQ) and per Q and dO block (dK/dV) against a
larger baseline, ~5-10 %.

Tile configurations: :func:`tile_candidates` generates a small ``triton.autotune`` space per kernel
and problem, which the tile-level cost model (``visionattn.analysis.cost_model``) prunes
(:func:`tuning_candidates`) before it is autotuned on the first call per problem on a GPU; under
Triton's CPU interpreter one fixed configuration runs (:func:`interpreter_tile`), and index arithmetic
runs in int64 there (the interpreter checks each int32 operation for overflow, which doubles its cost).
"""
from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ['KINDS', 'Problem', 'TileConfig', 'forward', 'backward', 'tile_candidates', 'tuning_candidates',
           'interpreter_tile', 'window_bounds']

_LOG2E = 1.4426950408889634


# ----------------------------------------------------------------------------------------------------
# Device helpers. Under Triton's interpreter every call of a jit helper and every int32 operation (it
# checks each for overflow) costs milliseconds, so the helpers are few and coarse, and index arithmetic
# runs in IDX: int64 when interpreted, int32 compiled (addresses are always computed in int64).
# ----------------------------------------------------------------------------------------------------

@triton.jit
def _mma(a, b, PRECISION: tl.constexpr, FP32_DOT: tl.constexpr):
    """tl.dot with fp32 accumulation; FP32_DOT multiplies in fp32 (Triton's interpreter gets bf16 wrong)."""
    if FP32_DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision='ieee')
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _window(pos, group_len, kernel, stride, CAUSAL: tl.constexpr):
    """Keys [start, end) (group coordinates) of the window of query ``pos``: the module docstring's rule."""
    if CAUSAL:
        leader = tl.minimum(pos // stride * stride + stride - 1, group_len - 1)
        return tl.maximum(leader - kernel + 1, 0), pos + 1
    else:
        leader = tl.minimum(pos // stride * stride + stride // 2, group_len - 1)
        start = tl.minimum(tl.maximum(leader - kernel // 2, 0), group_len - kernel)
        return start, start + kernel


@triton.jit
def _query_range(first_key, last_key, group_len, kernel, stride, CAUSAL: tl.constexpr):
    """Queries [lo, hi] whose windows hold a key of [first_key, last_key]: ``_window`` inverted
    (windows are monotone: from the first query whose window ends after ``first_key`` to the last whose
    window starts at or before ``last_key``; lo > hi when no window holds them)."""
    if CAUSAL:
        lo = first_key
        hi = tl.minimum((last_key + kernel - stride) // stride * stride + stride - 1, group_len - 1)
    else:
        reach = first_key - kernel + 1  # the window must start at or after this
        lo = tl.where(reach <= 0, 0, (tl.maximum(reach, 1) + kernel // 2 - stride // 2 + stride - 1) // stride * stride)
        hi = tl.minimum((last_key + kernel // 2 - stride // 2) // stride * stride + stride - 1, group_len - 1)
    return lo, tl.where(last_key >= group_len - kernel, group_len - 1, hi)


@triton.jit
def _tile_origin(X, Y, Z, dil_x, dil_y, dil_z, str_x, str_y, str_z,
                 BLOCK_X: tl.constexpr, BLOCK_Y: tl.constexpr, BLOCK_Z: tl.constexpr, IDX: tl.constexpr):
    """This program's tile (tiles of every dilation group, z fastest, then the batch): the batch index,
    and per axis the dilation group, its length, the tile's first position (group coordinates) and the
    number of positions it owns (whole stride groups when one fits in BLOCK lanes: BLOCK - BLOCK % s)."""
    step_x = tl.where(str_x <= BLOCK_X, BLOCK_X - BLOCK_X % str_x, BLOCK_X)
    step_y = tl.where(str_y <= BLOCK_Y, BLOCK_Y - BLOCK_Y % str_y, BLOCK_Y)
    step_z = tl.where(str_z <= BLOCK_Z, BLOCK_Z - BLOCK_Z % str_z, BLOCK_Z)
    # tiles per dilation group: ceil(ceil(L / d) / step)
    per_x = ((X + dil_x - 1) // dil_x + step_x - 1) // step_x
    per_y = ((Y + dil_y - 1) // dil_y + step_y - 1) // step_y
    per_z = ((Z + dil_z - 1) // dil_z + step_z - 1) // step_z
    tiles_yz = dil_y * per_y * dil_z * per_z
    pid = tl.program_id(0).to(IDX)
    tile = pid % (dil_x * per_x * tiles_yz)
    index_x, index_y, index_z = tile // tiles_yz, tile // (dil_z * per_z) % (dil_y * per_y), tile % (dil_z * per_z)
    grp_x, grp_y, grp_z = index_x // per_x, index_y // per_y, index_z // per_z
    len_x, len_y, len_z = (X - grp_x + dil_x - 1) // dil_x, (Y - grp_y + dil_y - 1) // dil_y, \
        (Z - grp_z + dil_z - 1) // dil_z
    first_x, first_y, first_z = index_x % per_x * step_x, index_y % per_y * step_y, index_z % per_z * step_z
    batch = (pid // (dil_x * per_x * tiles_yz)).to(tl.int64)
    return (batch, grp_x, grp_y, grp_z, len_x, len_y, len_z, first_x, first_y, first_z, step_x, step_y, step_z)


@triton.jit
def _block(first_x, first_y, first_z, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z,
           BX: tl.constexpr, BY: tl.constexpr, BZ: tl.constexpr, IDX: tl.constexpr):
    """Group coordinates of the BX * BY * BZ lanes of a block starting at ``first`` (z fastest), and
    their map positions (int64)."""
    offs = tl.arange(0, BX * BY * BZ).to(IDX)
    x, y, z = first_x + offs // (BY * BZ), first_y + offs // BZ % BY, first_z + offs % BZ
    return (x, y, z, (grp_x + x * dil_x).to(tl.int64), (grp_y + y * dil_y).to(tl.int64),
            (grp_z + z * dil_z).to(tl.int64))


@triton.jit
def _load(base, pos_x, pos_y, pos_z, sx, sy, sz, sd, valid, head_dim, BLOCK_D: tl.constexpr):
    """(lanes, BLOCK_D) block at map positions ``pos``; zeros where not ``valid``."""
    d = tl.arange(0, BLOCK_D)
    rows = pos_x * sx + pos_y * sy + pos_z * sz
    return tl.load(base + rows[:, None] + d[None, :] * sd, mask=valid[:, None] & (d[None, :] < head_dim), other=0.)


@triton.jit
def _store(base, pos_x, pos_y, pos_z, sx, sy, sz, sd, valid, head_dim, value, BLOCK_D: tl.constexpr):
    d = tl.arange(0, BLOCK_D)
    rows = pos_x * sx + pos_y * sy + pos_z * sz
    tl.store(base + rows[:, None] + d[None, :] * sd, value.to(base.dtype.element_ty),
             mask=valid[:, None] & (d[None, :] < head_dim))


@triton.jit
def _split_nonfinite(x):
    """The block with its non-finite rows zeroed (for a dot), and per row 0. (finite) or NaN.

    Where a dot would multiply a zero probability (or gradient) of a lane outside a window with a
    non-finite row (0 * inf = NaN), the row enters as zeros and the caller adds the NaN flag to exactly
    the in-window lanes of the other operand instead."""
    flags = tl.sum(x.to(tl.float32) * 0., 1)  # x * 0 is NaN for inf and NaN
    return tl.where(flags[:, None] == 0., x, 0.), flags


@triton.jit
def _in_window(start_x, end_x, start_y, end_y, start_z, end_z, q_valid, k_x, k_y, k_z, k_valid):
    """(queries, keys): the key lies in the query's window [start, end) on every axis; both are real."""
    return (q_valid[:, None] & k_valid[None, :]
            & (k_x[None, :] >= start_x[:, None]) & (k_x[None, :] < end_x[:, None])
            & (k_y[None, :] >= start_y[:, None]) & (k_y[None, :] < end_y[:, None])
            & (k_z[None, :] >= start_z[:, None]) & (k_z[None, :] < end_z[:, None]))


@triton.jit
def _logits(q, k, in_window, q_x, q_y, q_z, k_x, k_y, k_z, scale_log2, rpb_base, srx, sry, srz,
            kern_x, kern_y, kern_z, HAS_RPB: tl.constexpr, PRECISION: tl.constexpr, FP32_DOT: tl.constexpr):
    """Logits (log2 units) of a (queries, keys) block, selected (never added) to -inf outside each window."""
    if FP32_DOT:
        s = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision='ieee') * scale_log2
    else:
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
    if HAS_RPB:  # stride 1, not causal: the bias of key kp for query ip sits at kp - ip + k - 1 per axis
        bias = tl.load(rpb_base + (k_x[None, :] - q_x[:, None] + kern_x - 1) * srx
                       + (k_y[None, :] - q_y[:, None] + kern_y - 1) * sry
                       + (k_z[None, :] - q_z[:, None] + kern_z - 1) * srz, mask=in_window, other=0.)
        s += bias.to(tl.float32) * 1.4426950408889634
    return tl.where(in_window, s, float('-inf'))


# ----------------------------------------------------------------------------------------------------
# Kernels. Grid: (tiles of the map (all dilation groups) x batch, heads). Strides: s<tensor><axis>, with
# axes b, x, y, z, n (head), d; ``so*`` are dO's, ``sg*`` the results' (dQ, dK and dV share them).
# ----------------------------------------------------------------------------------------------------

@triton.jit
def _query_tile(X, Y, Z, dil_x, dil_y, dil_z, str_x, str_y, str_z, kern_x, kern_y, kern_z,
                CAUSAL_X: tl.constexpr, CAUSAL_Y: tl.constexpr, CAUSAL_Z: tl.constexpr,
                BLOCK_QX: tl.constexpr, BLOCK_QY: tl.constexpr, BLOCK_QZ: tl.constexpr, IDX: tl.constexpr):
    """The forward and dQ kernels' query tile: batch; per axis the dilation group and its length; the
    lanes' group coordinates, map positions, validity and windows [start, end); and the key box
    [lo, hi) holding every window (from the smallest start to the largest end)."""
    (b, grp_x, grp_y, grp_z, len_x, len_y, len_z, first_x, first_y, first_z, step_x, step_y, step_z) = \
        _tile_origin(X, Y, Z, dil_x, dil_y, dil_z, str_x, str_y, str_z, BLOCK_QX, BLOCK_QY, BLOCK_QZ, IDX)
    q_x, q_y, q_z, pos_x, pos_y, pos_z = _block(first_x, first_y, first_z, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z,
                                                BLOCK_QX, BLOCK_QY, BLOCK_QZ, IDX)
    q_valid = ((q_x < tl.minimum(first_x + step_x, len_x)) & (q_y < tl.minimum(first_y + step_y, len_y))
               & (q_z < tl.minimum(first_z + step_z, len_z)))
    start_x, end_x = _window(q_x, len_x, kern_x, str_x, CAUSAL_X)
    start_y, end_y = _window(q_y, len_y, kern_y, str_y, CAUSAL_Y)
    start_z, end_z = _window(q_z, len_z, kern_z, str_z, CAUSAL_Z)
    lo_x, lo_y, lo_z = (tl.min(tl.where(q_valid, start_x, len_x), 0), tl.min(tl.where(q_valid, start_y, len_y), 0),
                        tl.min(tl.where(q_valid, start_z, len_z), 0))
    hi_x, hi_y, hi_z = (tl.maximum(tl.max(tl.where(q_valid, end_x, 0), 0), lo_x),  # empty tiles: empty boxes
                        tl.maximum(tl.max(tl.where(q_valid, end_y, 0), 0), lo_y),
                        tl.maximum(tl.max(tl.where(q_valid, end_z, 0), 0), lo_z))
    return (b, grp_x, grp_y, grp_z, len_x, len_y, len_z, q_x, q_y, q_z, pos_x, pos_y, pos_z, q_valid,
            start_x, end_x, start_y, end_y, start_z, end_z, lo_x, hi_x, lo_y, hi_y, lo_z, hi_z)


@triton.jit
def _key_chunk(c, chunks_y, chunks_z, lo_x, lo_y, lo_z, hi_x, hi_y, hi_z, grp_x, grp_y, grp_z,
               dil_x, dil_y, dil_z, q, q_x, q_y, q_z, start_x, end_x, start_y, end_y, start_z, end_z,
               q_valid, k_base, v_base, skx, sky, skz, skd, svx, svy, svz, svd, head_dim, scale_log2,
               rpb_base, srx, sry, srz, kern_x, kern_y, kern_z, HAS_RPB: tl.constexpr,
               BLOCK_KX: tl.constexpr, BLOCK_KY: tl.constexpr, BLOCK_KZ: tl.constexpr, BLOCK_D: tl.constexpr,
               PRECISION: tl.constexpr, FP32_DOT: tl.constexpr, IDX: tl.constexpr):
    """Key chunk ``c`` of a query tile's key box (forward and dQ kernels): the keys' group coordinates, the keys
    and values, the window mask and the logits (log2 units, -inf outside the windows)."""
    k_x, k_y, k_z, kpos_x, kpos_y, kpos_z = _block(
        lo_x + c // (chunks_y * chunks_z) * BLOCK_KX, lo_y + c // chunks_z % chunks_y * BLOCK_KY,
        lo_z + c % chunks_z * BLOCK_KZ, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z, BLOCK_KX, BLOCK_KY, BLOCK_KZ, IDX)
    k_valid = (k_x < hi_x) & (k_y < hi_y) & (k_z < hi_z)
    k = _load(k_base, kpos_x, kpos_y, kpos_z, skx, sky, skz, skd, k_valid, head_dim, BLOCK_D)
    v = _load(v_base, kpos_x, kpos_y, kpos_z, svx, svy, svz, svd, k_valid, head_dim, BLOCK_D)
    in_window = _in_window(start_x, end_x, start_y, end_y, start_z, end_z, q_valid, k_x, k_y, k_z, k_valid)
    s = _logits(q, k, in_window, q_x, q_y, q_z, k_x, k_y, k_z, scale_log2, rpb_base, srx, sry, srz,
                kern_x, kern_y, kern_z, HAS_RPB, PRECISION, FP32_DOT)
    return k_x, k_y, k_z, k, v, in_window, s


@triton.jit
def _forward_kernel(Q, K, V, RPB, OUT, LSE,
                    sqb, sqx, sqy, sqz, sqn, sqd,
                    skb, skx, sky, skz, skn, skd,
                    svb, svx, svy, svz, svn, svd,
                    sgb, sgx, sgy, sgz, sgn, sgd,
                    srn, srx, sry, srz,
                    X, Y, Z, heads, head_dim, scale_log2,
                    kern_x, kern_y, kern_z, dil_x, dil_y, dil_z, str_x, str_y, str_z,
                    CAUSAL_X: tl.constexpr, CAUSAL_Y: tl.constexpr, CAUSAL_Z: tl.constexpr,
                    HAS_RPB: tl.constexpr,
                    BLOCK_QX: tl.constexpr, BLOCK_QY: tl.constexpr, BLOCK_QZ: tl.constexpr,
                    BLOCK_KX: tl.constexpr, BLOCK_KY: tl.constexpr, BLOCK_KZ: tl.constexpr,
                    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, FP32_DOT: tl.constexpr, IDX: tl.constexpr):
    """Output (strides ``sg*``) and log-sum-exp of a query tile."""
    (b, grp_x, grp_y, grp_z, len_x, len_y, len_z, q_x, q_y, q_z, pos_x, pos_y, pos_z, q_valid,
     start_x, end_x, start_y, end_y, start_z, end_z, lo_x, hi_x, lo_y, hi_y, lo_z, hi_z) = _query_tile(
        X, Y, Z, dil_x, dil_y, dil_z, str_x, str_y, str_z, kern_x, kern_y, kern_z,
        CAUSAL_X, CAUSAL_Y, CAUSAL_Z, BLOCK_QX, BLOCK_QY, BLOCK_QZ, IDX)
    n = tl.program_id(1).to(tl.int64)  # head
    q = _load(Q + b * sqb + n * sqn, pos_x, pos_y, pos_z, sqx, sqy, sqz, sqd, q_valid, head_dim, BLOCK_D)
    rpb_base = RPB + n * srn
    k_base, v_base = K + b * skb + n * skn, V + b * svb + n * svn
    chunks_y, chunks_z = (hi_y - lo_y + BLOCK_KY - 1) // BLOCK_KY, (hi_z - lo_z + BLOCK_KZ - 1) // BLOCK_KZ
    m_i = tl.full([BLOCK_QX * BLOCK_QY * BLOCK_QZ], float('-inf'), tl.float32)
    l_i = tl.full([BLOCK_QX * BLOCK_QY * BLOCK_QZ], 0., tl.float32)
    acc = tl.full([BLOCK_QX * BLOCK_QY * BLOCK_QZ, BLOCK_D], 0., tl.float32)
    for c in range(0, (hi_x - lo_x + BLOCK_KX - 1) // BLOCK_KX * chunks_y * chunks_z):  # the key box, chunk by chunk
        _, _, _, k, v, in_window, s = _key_chunk(
            c, chunks_y, chunks_z, lo_x, lo_y, lo_z, hi_x, hi_y, hi_z, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z,
            q, q_x, q_y, q_z, start_x, end_x, start_y, end_y, start_z, end_z, q_valid, k_base, v_base,
            skx, sky, skz, skd, svx, svy, svz, svd, head_dim, scale_log2, rpb_base, srx, sry, srz,
            kern_x, kern_y, kern_z, HAS_RPB, BLOCK_KX, BLOCK_KY, BLOCK_KZ, BLOCK_D, PRECISION, FP32_DOT, IDX)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float('-inf'), 0., m_new)  # a row may see no key of this chunk
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v, v_flags = _split_nonfinite(v)  # a non-finite value reaches exactly the queries whose window holds it
        p += tl.where(in_window, v_flags[None, :], 0.)
        acc = acc * alpha[:, None] + _mma(p.to(v.dtype), v, PRECISION, FP32_DOT)
        m_i = m_new

    l_i = tl.where(q_valid, l_i, 1.)  # idle lanes: no 0 / 0
    _store(OUT + b * sgb + n * sgn, pos_x, pos_y, pos_z, sgx, sgy, sgz, sgd, q_valid, head_dim, acc / l_i[:, None],
           BLOCK_D)
    lse_rows = (((b * heads + n) * X + pos_x) * Y + pos_y) * Z + pos_z  # (batch, heads, X, Y, Z) contiguous
    tl.store(LSE + lse_rows, (m_i + tl.log2(l_i)) * 0.6931471805599453, mask=q_valid)


@triton.jit
def _dq_step(c, chunks_y, chunks_z, lo_x, lo_y, lo_z, hi_x, hi_y, hi_z, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z,
             q, do, lse, q_x, q_y, q_z, start_x, end_x, start_y, end_y, start_z, end_z, q_valid, k_base, v_base,
             skx, sky, skz, skd, svx, svy, svz, svd, head_dim, scale_log2, rpb_base, srx, sry, srz, kern_x, kern_y,
             kern_z, HAS_RPB: tl.constexpr, BLOCK_KX: tl.constexpr, BLOCK_KY: tl.constexpr, BLOCK_KZ: tl.constexpr,
             BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, FP32_DOT: tl.constexpr, IDX: tl.constexpr):
    """Key chunk ``c`` in the dQ kernel (both passes): :func:`_key_chunk` plus the probabilities recomputed from
    the log-sum-exp (log2 units) and dP = dO V^T."""
    k_x, k_y, k_z, k, v, in_window, s = _key_chunk(
        c, chunks_y, chunks_z, lo_x, lo_y, lo_z, hi_x, hi_y, hi_z, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z,
        q, q_x, q_y, q_z, start_x, end_x, start_y, end_y, start_z, end_z, q_valid, k_base, v_base,
        skx, sky, skz, skd, svx, svy, svz, svd, head_dim, scale_log2, rpb_base, srx, sry, srz,
        kern_x, kern_y, kern_z, HAS_RPB, BLOCK_KX, BLOCK_KY, BLOCK_KZ, BLOCK_D, PRECISION, FP32_DOT, IDX)
    p = tl.where(in_window, tl.exp2(s - lse[:, None]), 0.)
    return k_x, k_y, k_z, k, in_window, p, _mma(do, tl.trans(v), PRECISION, FP32_DOT)


@triton.jit
def _backward_dq_kernel(Q, K, V, RPB, DO, LSE, DELTA, DQ, DBIAS,
                        sqb, sqx, sqy, sqz, sqn, sqd,
                        skb, skx, sky, skz, skn, skd,
                        svb, svx, svy, svz, svn, svd,
                        sob, sox, soy, soz, son, sod,
                        sgb, sgx, sgy, sgz, sgn, sgd,
                        srn, srx, sry, srz,
                        X, Y, Z, heads, head_dim, scale, scale_log2,
                        kern_x, kern_y, kern_z, dil_x, dil_y, dil_z, str_x, str_y, str_z,
                        CAUSAL_X: tl.constexpr, CAUSAL_Y: tl.constexpr, CAUSAL_Z: tl.constexpr,
                        HAS_RPB: tl.constexpr,
                        BLOCK_QX: tl.constexpr, BLOCK_QY: tl.constexpr, BLOCK_QZ: tl.constexpr,
                        BLOCK_KX: tl.constexpr, BLOCK_KY: tl.constexpr, BLOCK_KZ: tl.constexpr,
                        BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, FP32_DOT: tl.constexpr, IDX: tl.constexpr):
    """dQ of a query tile; with RPB also dS summed into DBIAS[head, X, Y, Z, tap] (atomically over batch)."""
    (b, grp_x, grp_y, grp_z, len_x, len_y, len_z, q_x, q_y, q_z, pos_x, pos_y, pos_z, q_valid,
     start_x, end_x, start_y, end_y, start_z, end_z, lo_x, hi_x, lo_y, hi_y, lo_z, hi_z) = _query_tile(
        X, Y, Z, dil_x, dil_y, dil_z, str_x, str_y, str_z, kern_x, kern_y, kern_z,
        CAUSAL_X, CAUSAL_Y, CAUSAL_Z, BLOCK_QX, BLOCK_QY, BLOCK_QZ, IDX)
    n = tl.program_id(1).to(tl.int64)  # head
    q = _load(Q + b * sqb + n * sqn, pos_x, pos_y, pos_z, sqx, sqy, sqz, sqd, q_valid, head_dim, BLOCK_D)
    do = _load(DO + b * sob + n * son, pos_x, pos_y, pos_z, sox, soy, soz, sod, q_valid, head_dim, BLOCK_D)
    lse_rows = (((b * heads + n) * X + pos_x) * Y + pos_y) * Z + pos_z
    lse = tl.load(LSE + lse_rows, mask=q_valid, other=0.) * 1.4426950408889634
    rpb_base = RPB + n * srn
    dbias_rows = (((n * X + pos_x) * Y + pos_y) * Z + pos_z) * (kern_x * kern_y * kern_z)
    k_base, v_base = K + b * skb + n * skn, V + b * svb + n * svn
    chunks_y, chunks_z = (hi_y - lo_y + BLOCK_KY - 1) // BLOCK_KY, (hi_z - lo_z + BLOCK_KZ - 1) // BLOCK_KZ
    n_chunks = (hi_x - lo_x + BLOCK_KX - 1) // BLOCK_KX * chunks_y * chunks_z
    # delta = rowsum(p * dP) / rowsum(p) over the p recomputed here, not rowsum(dO * O) from the saved output:
    # in 16-bit dtypes that output is rounded (and its p was rounded before the PV dot), and where a saturated
    # softmax makes ds = p * (dP - delta) cancel, the difference became O(1) gradient errors; dividing by
    # rowsum(p) cancels the recomputed p's own error (its sum is 1 only up to the rounding of lse). Written for
    # the dK/dV kernel.
    p_dp = tl.full([BLOCK_QX * BLOCK_QY * BLOCK_QZ], 0., tl.float32)
    p_sum = tl.full([BLOCK_QX * BLOCK_QY * BLOCK_QZ], 0., tl.float32)
    for c in range(0, n_chunks):
        k_x, k_y, k_z, k, in_window, p, dp = _dq_step(
            c, chunks_y, chunks_z, lo_x, lo_y, lo_z, hi_x, hi_y, hi_z, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z,
            q, do, lse, q_x, q_y, q_z, start_x, end_x, start_y, end_y, start_z, end_z, q_valid, k_base, v_base,
            skx, sky, skz, skd, svx, svy, svz, svd, head_dim, scale_log2, rpb_base, srx, sry, srz, kern_x, kern_y,
            kern_z, HAS_RPB, BLOCK_KX, BLOCK_KY, BLOCK_KZ, BLOCK_D, PRECISION, FP32_DOT, IDX)
        p_dp += tl.sum(tl.where(in_window, p * dp, 0.), 1)
        p_sum += tl.sum(p, 1)
    delta = p_dp / tl.where(p_sum == 0., 1., p_sum)  # no key in the window: p = 0, delta unused
    tl.store(DELTA + lse_rows, delta, mask=q_valid)
    dq = tl.full([BLOCK_QX * BLOCK_QY * BLOCK_QZ, BLOCK_D], 0., tl.float32)
    for c in range(0, n_chunks):
        k_x, k_y, k_z, k, in_window, p, dp = _dq_step(
            c, chunks_y, chunks_z, lo_x, lo_y, lo_z, hi_x, hi_y, hi_z, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z,
            q, do, lse, q_x, q_y, q_z, start_x, end_x, start_y, end_y, start_z, end_z, q_valid, k_base, v_base,
            skx, sky, skz, skd, svx, svy, svz, svd, head_dim, scale_log2, rpb_base, srx, sry, srz, kern_x, kern_y,
            kern_z, HAS_RPB, BLOCK_KX, BLOCK_KY, BLOCK_KZ, BLOCK_D, PRECISION, FP32_DOT, IDX)
        ds = tl.where(in_window, p * (dp - delta[:, None]), 0.)
        if HAS_RPB:
            tap = (((k_x[None, :] - start_x[:, None]) * kern_y + (k_y[None, :] - start_y[:, None])) * kern_z
                   + (k_z[None, :] - start_z[:, None]))
            tl.atomic_add(DBIAS + dbias_rows[:, None] + tap, ds, mask=in_window)
        k, k_flags = _split_nonfinite(k)
        ds += tl.where(in_window, k_flags[None, :], 0.)
        dq += _mma(ds.to(k.dtype), k, PRECISION, FP32_DOT)

    _store(DQ + b * sgb + n * sgn, pos_x, pos_y, pos_z, sgx, sgy, sgz, sgd, q_valid, head_dim, dq * scale, BLOCK_D)


@triton.jit
def _backward_dkdv_kernel(Q, K, V, RPB, DO, LSE, DELTA, DK, DV,
                          sqb, sqx, sqy, sqz, sqn, sqd,
                          skb, skx, sky, skz, skn, skd,
                          svb, svx, svy, svz, svn, svd,
                          sob, sox, soy, soz, son, sod,
                          sgb, sgx, sgy, sgz, sgn, sgd,
                          srn, srx, sry, srz,
                          X, Y, Z, heads, head_dim, scale, scale_log2,
                          kern_x, kern_y, kern_z, dil_x, dil_y, dil_z, str_x, str_y, str_z,
                          CAUSAL_X: tl.constexpr, CAUSAL_Y: tl.constexpr, CAUSAL_Z: tl.constexpr,
                          HAS_RPB: tl.constexpr,
                          BLOCK_QX: tl.constexpr, BLOCK_QY: tl.constexpr, BLOCK_QZ: tl.constexpr,
                          BLOCK_KX: tl.constexpr, BLOCK_KY: tl.constexpr, BLOCK_KZ: tl.constexpr,
                          BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, FP32_DOT: tl.constexpr, IDX: tl.constexpr):
    """dK and dV of a key tile, walking the box of queries whose windows can hold its keys in chunks of
    BLOCK_QX x BLOCK_QY x BLOCK_QZ queries."""
    (b, grp_x, grp_y, grp_z, len_x, len_y, len_z, first_x, first_y, first_z, step_x, step_y, step_z) = \
        _tile_origin(X, Y, Z, dil_x, dil_y, dil_z, str_x, str_y, str_z, BLOCK_KX, BLOCK_KY, BLOCK_KZ, IDX)
    n = tl.program_id(1).to(tl.int64)  # head
    k_x, k_y, k_z, pos_x, pos_y, pos_z = _block(first_x, first_y, first_z, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z,
                                                BLOCK_KX, BLOCK_KY, BLOCK_KZ, IDX)
    last_x, last_y, last_z = (tl.minimum(first_x + step_x, len_x) - 1, tl.minimum(first_y + step_y, len_y) - 1,
                              tl.minimum(first_z + step_z, len_z) - 1)
    k_valid = (k_x <= last_x) & (k_y <= last_y) & (k_z <= last_z)
    k = _load(K + b * skb + n * skn, pos_x, pos_y, pos_z, skx, sky, skz, skd, k_valid, head_dim, BLOCK_D)
    v = _load(V + b * svb + n * svn, pos_x, pos_y, pos_z, svx, svy, svz, svd, k_valid, head_dim, BLOCK_D)
    lo_x, hi_x = _query_range(first_x, last_x, len_x, kern_x, str_x, CAUSAL_X)
    lo_y, hi_y = _query_range(first_y, last_y, len_y, kern_y, str_y, CAUSAL_Y)
    lo_z, hi_z = _query_range(first_z, last_z, len_z, kern_z, str_z, CAUSAL_Z)
    # the query box [lo, hi] (inclusive); empty where no window holds these keys (possible with stride)
    chunks_y = (tl.maximum(hi_y - lo_y + 1, 0) + BLOCK_QY - 1) // BLOCK_QY
    chunks_z = (tl.maximum(hi_z - lo_z + 1, 0) + BLOCK_QZ - 1) // BLOCK_QZ
    chunks = (tl.maximum(hi_x - lo_x + 1, 0) + BLOCK_QX - 1) // BLOCK_QX * chunks_y * chunks_z

    rpb_base = RPB + n * srn
    q_base, do_base = Q + b * sqb + n * sqn, DO + b * sob + n * son
    dk = tl.full([BLOCK_KX * BLOCK_KY * BLOCK_KZ, BLOCK_D], 0., tl.float32)
    dv = tl.full([BLOCK_KX * BLOCK_KY * BLOCK_KZ, BLOCK_D], 0., tl.float32)
    for c in range(0, chunks):
        q_x, q_y, q_z, qpos_x, qpos_y, qpos_z = _block(
            lo_x + c // (chunks_y * chunks_z) * BLOCK_QX, lo_y + c // chunks_z % chunks_y * BLOCK_QY,
            lo_z + c % chunks_z * BLOCK_QZ, grp_x, grp_y, grp_z, dil_x, dil_y, dil_z, BLOCK_QX, BLOCK_QY, BLOCK_QZ, IDX)
        q_valid = (q_x <= hi_x) & (q_y <= hi_y) & (q_z <= hi_z)
        q = _load(q_base, qpos_x, qpos_y, qpos_z, sqx, sqy, sqz, sqd, q_valid, head_dim, BLOCK_D)
        do = _load(do_base, qpos_x, qpos_y, qpos_z, sox, soy, soz, sod, q_valid, head_dim, BLOCK_D)
        lse_rows = (((b * heads + n) * X + qpos_x) * Y + qpos_y) * Z + qpos_z
        lse = tl.load(LSE + lse_rows, mask=q_valid, other=0.) * 1.4426950408889634
        delta = tl.load(DELTA + lse_rows, mask=q_valid, other=0.)
        start_x, end_x = _window(q_x, len_x, kern_x, str_x, CAUSAL_X)
        start_y, end_y = _window(q_y, len_y, kern_y, str_y, CAUSAL_Y)
        start_z, end_z = _window(q_z, len_z, kern_z, str_z, CAUSAL_Z)
        in_window = _in_window(start_x, end_x, start_y, end_y, start_z, end_z, q_valid, k_x, k_y, k_z, k_valid)
        s = _logits(q, k, in_window, q_x, q_y, q_z, k_x, k_y, k_z, scale_log2, rpb_base, srx, sry, srz,
                    kern_x, kern_y, kern_z, HAS_RPB, PRECISION, FP32_DOT)
        p = tl.where(in_window, tl.exp2(s - lse[:, None]), 0.)
        dp = _mma(do, tl.trans(v), PRECISION, FP32_DOT)
        ds = tl.where(in_window, p * (dp - delta[:, None]), 0.)
        # non-finite dO or q rows reach exactly the keys in their windows
        do, do_flags = _split_nonfinite(do)
        p += tl.where(in_window, do_flags[:, None], 0.)
        dv += _mma(tl.trans(p.to(do.dtype)), do, PRECISION, FP32_DOT)
        q, q_flags = _split_nonfinite(q)
        ds += tl.where(in_window, q_flags[:, None], 0.)
        dk += _mma(tl.trans(ds.to(q.dtype)), q, PRECISION, FP32_DOT)

    _store(DK + b * sgb + n * sgn, pos_x, pos_y, pos_z, sgx, sgy, sgz, sgd, k_valid, head_dim, dk * scale, BLOCK_D)
    _store(DV + b * sgb + n * sgn, pos_x, pos_y, pos_z, sgx, sgy, sgz, sgd, k_valid, head_dim, dv, BLOCK_D)


# ----------------------------------------------------------------------------------------------------
# Tile configurations
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """What the tile choice depends on: one call's geometry (3-D, group coordinates follow from it)."""

    shape: tuple[int, int, int]             # X, Y, Z
    kernel_size: tuple[int, int, int]
    dilation: tuple[int, int, int]
    stride: tuple[int, int, int]
    is_causal: tuple[bool, bool, bool]
    head_dim: int
    dtype: torch.dtype

    def group_lengths(self) -> tuple[int, ...]:
        """Length of the longest dilation group per axis."""
        return tuple((length + d - 1) // d for length, d in zip(self.shape, self.dilation))


@dataclass(frozen=True)
class TileConfig:
    """Lanes per axis of the query block and the key block, and the launch options.

    In the forward and dQ kernels the query block is the program's tile and the key block the chunk it
    walks the key box in; in the dK/dV kernel the key block is the tile and the query block the chunk.
    Under Triton's interpreter any power of two works; compiled, each block needs >= 16 lanes (tl.dot).
    """

    query: tuple[int, int, int]
    key: tuple[int, int, int]
    num_warps: int = 4
    num_stages: int = 2

    def kwargs(self) -> dict:
        names = ('BLOCK_QX', 'BLOCK_QY', 'BLOCK_QZ', 'BLOCK_KX', 'BLOCK_KY', 'BLOCK_KZ')
        return dict(zip(names, (*self.query, *self.key)))

    def triton_config(self) -> triton.Config:
        return triton.Config(self.kwargs(), num_warps=self.num_warps, num_stages=self.num_stages)


KINDS = ('forward', 'dkdv')  # 'forward' covers the forward and dQ kernels (query tiles), 'dkdv' key tiles


def window_bounds(pos: int, group_len: int, kernel: int, stride: int, causal: bool) -> tuple[int, int]:
    """Keys [start, end) of the window of query ``pos`` (group coordinates): the rule of ``_window``."""
    if causal:
        leader = min(pos // stride * stride + stride - 1, group_len - 1)
        return max(leader - kernel + 1, 0), pos + 1
    leader = min(pos // stride * stride + stride // 2, group_len - 1)
    start = min(max(leader - kernel // 2, 0), group_len - kernel)
    return start, start + kernel


def _step(block: int, stride: int) -> int:
    """Positions a tile of ``block`` lanes owns along an axis (the rule in ``_tile_origin``)."""
    return block - block % stride if stride <= block else block


@functools.lru_cache(maxsize=4096)
def _axis_box(length: int, kernel: int, stride: int, causal: bool, block: int, kind: str) -> tuple[float, int, float]:
    """Along one axis (one group of ``length`` positions), tiles of ``block`` lanes: the mean and the
    largest extent of the box the tile walks (keys for 'forward', queries for 'dkdv') and the mean
    number of positions a tile owns."""
    step = _step(block, stride)
    bounds = [window_bounds(i, length, kernel, stride, causal) for i in range(length)]
    starts, ends = [b[0] for b in bounds], [b[1] for b in bounds]
    extents, owned = [], []
    for first in range(0, length, step):
        last = min(first + step, length) - 1
        if kind == 'forward':
            extents.append(ends[last] - starts[first])
        else:  # queries whose windows hold a key of [first, last]
            extents.append(max(0, bisect.bisect_right(starts, last) - bisect.bisect_right(ends, first)))
        owned.append(last - first + 1)
    return sum(extents) / len(extents), max(extents), sum(owned) / len(owned)


def _pow2_shapes(lanes: int, caps: Sequence[int]) -> list[tuple[int, int, int]]:
    """Power-of-two (x, y, z) with x * y * z == lanes and each within its cap (z may exceed its cap if
    nothing else reaches ``lanes``)."""
    shapes = [(x, y, lanes // (x * y)) for x in (2 ** i for i in range(lanes.bit_length()))
              for y in (2 ** i for i in range(lanes.bit_length())) if lanes % (x * y) == 0]
    fitting = [s for s in shapes if all(b <= c for b, c in zip(s, caps))]
    if fitting:
        return fitting
    x, y = min(caps[0], lanes), min(caps[1], max(1, lanes // min(caps[0], lanes)))
    return [(x, y, lanes // (x * y))]


def _tile_shape(problem: Problem, lanes: int, kind: str) -> tuple[tuple[int, int, int], list[tuple[float, int]]]:
    """The tile of ``lanes`` lanes with the fewest computed (position, box position) pairs per owned
    position; returns it with its per-axis (mean, max) box extents. Ties: larger inner axes (coalescing)."""
    groups = problem.group_lengths()
    caps = [triton.next_power_of_2(g) for g in groups]

    def boxes(shape):
        return [_axis_box(g, k, s, c, b, kind) for g, k, s, c, b in
                zip(groups, problem.kernel_size, problem.stride, problem.is_causal, shape)]

    def cost(shape):
        axes = boxes(shape)
        return (lanes * math.prod(a[0] for a in axes) / math.prod(a[2] for a in axes), [-b for b in shape[::-1]])

    best = min(_pow2_shapes(lanes, caps), key=cost)
    return best, [(a[0], a[1]) for a in boxes(best)]


def _chunk_shape(box: list[tuple[float, int]], lanes: int) -> tuple[int, int, int]:
    """The chunk of ``lanes`` lanes that covers a box of these (mean, max) extents with the fewest keys."""
    caps = [triton.next_power_of_2(max(1, extent)) for _, extent in box]
    return min(_pow2_shapes(lanes, caps),
               key=lambda s: (math.prod(math.ceil(mean / c) * c for (mean, _), c in zip(box, s)),
                               [-c for c in s[::-1]]))


def tile_candidates(problem: Problem, kind: str) -> list[TileConfig]:
    """The autotuning space of one kernel for one problem (compiled Triton; >= 16 lanes per block).

    ``kind``: 'forward' (forward and dQ kernels: query tiles walking key chunks) or 'dkdv' (key tiles
    walking query chunks). For tiles of 16, 32 and 64 lanes, the tile shape over the three axes with
    the fewest computed logits per owned position (the box it walks, from the window rule; tiles hold
    whole stride groups), and for each the chunk shapes of 32 and 64 lanes that cover that box with the
    fewest padded positions; launched with num_warps / num_stages (4, 2) for 16 lanes, (4, 2) and
    (4, 3) for 32, (4, 3) and (8, 3) for 64. At most 10 configurations, no duplicates; the cost model
    prunes them (:func:`tuning_candidates`).
    """
    if kind not in KINDS:
        raise ValueError(f'tile_candidates: kind must be one of {KINDS}, got {kind!r}')
    launches = {16: ((4, 2),), 32: ((4, 2), (4, 3)), 64: ((4, 3), (8, 3))}
    configs: list[TileConfig] = []
    for lanes, options in launches.items():
        tile, box = _tile_shape(problem, lanes, kind)
        for chunk_lanes in (32, 64):
            chunk = _chunk_shape(box, chunk_lanes)
            for warps, stages in options:
                blocks = (tile, chunk) if kind == 'forward' else (chunk, tile)
                config = TileConfig(*blocks, num_warps=warps, num_stages=stages)
                if config not in configs:
                    configs.append(config)
    return configs


def interpreter_tile(problem: Problem, kind: str) -> TileConfig:
    """The one configuration run under Triton's CPU interpreter: tiles of up to 256 lanes and chunks of
    up to 512 (the interpreter's cost is per program and per operation, hardly per lane, so big blocks
    are fast; tests that must cross tiles pass small ones explicitly)."""
    caps = [triton.next_power_of_2(g) for g in problem.group_lengths()]
    tile, box = _tile_shape(problem, min(256, math.prod(caps)), kind)
    chunk = _chunk_shape(box, min(512, math.prod(triton.next_power_of_2(e) for _, e in box)))
    return TileConfig(*((tile, chunk) if kind == 'forward' else (chunk, tile)))


# ----------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------

_TUNING_KEY = ['X', 'Y', 'Z', 'head_dim', 'kern_x', 'kern_y', 'kern_z', 'dil_x', 'dil_y', 'dil_z',
               'str_x', 'str_y', 'str_z', 'CAUSAL_X', 'CAUSAL_Y', 'CAUSAL_Z', 'HAS_RPB']
_KERNELS = {'forward': _forward_kernel, 'dq': _backward_dq_kernel, 'dkdv': _backward_dkdv_kernel}


@functools.lru_cache(maxsize=1024)
def tuning_candidates(problem: Problem, name: str) -> tuple[TileConfig, ...]:
    """What kernel ``name`` ('forward', 'dq' or 'dkdv') is autotuned over: :func:`tile_candidates`
    pruned by the tile-level cost model (``visionattn.analysis.cost_model.prune_tiles``: candidates far
    worse than the best in computed FLOPs or bytes never reach the autotuner), per problem."""
    from visionattn.analysis.cost_model import prune_tiles
    return tuple(prune_tiles(problem, name, tile_candidates(problem, 'dkdv' if name == 'dkdv' else 'forward')))


@functools.lru_cache(maxsize=None)
def _autotuned(name: str, configs: tuple[TileConfig, ...]):
    """Kernel ``name`` autotuned over ``configs``, keyed on the problem (the tensors' dtypes join the key)."""
    reset = ['DBIAS'] if name == 'dq' else None  # accumulated atomically: zeroed before each trial
    return triton.autotune([c.triton_config() for c in configs], key=_TUNING_KEY, reset_to_zero=reset)(_KERNELS[name])


def _launch(name: str, problem: Problem, batch: int, heads: int, interpreted: bool, tile: Optional[TileConfig],
            *args, **constants) -> None:
    """Run kernel ``name`` with ``tile``, else autotuned over :func:`tuning_candidates` (compiled) or with
    :func:`interpreter_tile` (interpreted)."""
    kind = 'dkdv' if name == 'dkdv' else 'forward'
    tiled = 'BLOCK_K' if kind == 'dkdv' else 'BLOCK_Q'

    def grid(meta: dict) -> tuple[int, int]:
        tiles = math.prod(d * triton.cdiv(triton.cdiv(length, d), _step(meta[tiled + axis], s)) for length, d, s, axis
                          in zip(problem.shape, problem.dilation, problem.stride, 'XYZ'))
        return tiles * batch, heads

    if tile is None and not interpreted:
        _autotuned(name, tuning_candidates(problem, name))[grid](*args, **constants)
        return
    tile = tile or interpreter_tile(problem, kind)
    _KERNELS[name][grid](*args, **constants, **tile.kwargs(), num_warps=tile.num_warps, num_stages=tile.num_stages)


def _precision(dtype: torch.dtype, interpreted: bool) -> dict:
    """fp32 inputs use TF32 only where torch's own matmuls would (``torch.set_float32_matmul_precision``);
    under Triton's interpreter bf16 dots multiply in fp32 (its bf16 dot is wrong)."""
    ieee = dtype == torch.float32 and torch.get_float32_matmul_precision() == 'highest'
    return dict(PRECISION='ieee' if ieee else 'tf32', FP32_DOT=dtype == torch.bfloat16 and interpreted)


def _problem(q: Tensor, kernel_size, dilation, stride, is_causal) -> Problem:
    return Problem(tuple(q.shape[1:4]), tuple(kernel_size), tuple(dilation), tuple(stride),
                   tuple(bool(c) for c in is_causal), q.shape[-1], q.dtype)


def _geometry_args(problem: Problem, heads: int) -> tuple:
    return (*problem.shape, heads, problem.head_dim)


def _window_args(problem: Problem) -> tuple:
    return (*problem.kernel_size, *problem.dilation, *problem.stride)


def _constants(problem: Problem, rpb: Optional[Tensor], interpreted: bool) -> dict:
    causal = dict(zip(('CAUSAL_X', 'CAUSAL_Y', 'CAUSAL_Z'), problem.is_causal))
    return dict(**causal, HAS_RPB=rpb is not None, BLOCK_D=max(16, triton.next_power_of_2(problem.head_dim)),
                **_precision(problem.dtype, interpreted), IDX=tl.int64 if interpreted else tl.int32)


def _rpb_args(rpb: Optional[Tensor], q: Tensor) -> tuple:
    return (rpb, *rpb.stride()) if rpb is not None else (q, 0, 0, 0, 0)


def forward(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], kernel_size: Sequence[int],
            dilation: Sequence[int], stride: Sequence[int], is_causal: Sequence[bool], scale: float,
            interpreted: bool, tile: Optional[TileConfig] = None) -> tuple[Tensor, Tensor]:
    """out ``(B, X, Y, Z, heads, D)`` contiguous in q's dtype and the log-sum-exp ``(B, heads, X, Y, Z)``
    in float32 (natural log).

    ``interpreted``: run on Triton's CPU interpreter (the caller knows; kernels read no environment).
    ``tile``: run this configuration instead of autotuning (benchmarks and tests)."""
    batch, _, _, _, heads, _ = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, *q.shape[1:4]), dtype=torch.float32, device=q.device)
    if out.numel() == 0 or lse.numel() == 0:
        return out, lse
    problem = _problem(q, kernel_size, dilation, stride, is_causal)
    rpb_t, *rpb_strides = _rpb_args(rpb, q)
    _launch('forward', problem, batch, heads, interpreted, tile,
            q, k, v, rpb_t, out, lse, *q.stride(), *k.stride(), *v.stride(), *out.stride(), *rpb_strides,
            *_geometry_args(problem, heads), scale * _LOG2E, *_window_args(problem),
            **_constants(problem, rpb, interpreted))
    return out, lse


def _bias_index(length: int, kernel: int, dilation: int, device: torch.device) -> Tensor:
    """rpb index along one axis of tap 0 of each query's window (stride 1, not causal): start - ip + k - 1."""
    pos = torch.arange(length, device=device)
    group, group_pos = pos % dilation, pos // dilation
    group_len = (length - group + dilation - 1) // dilation
    start = torch.minimum((group_pos - kernel // 2).clamp(min=0), group_len - kernel)
    return start - group_pos + kernel - 1


def _fold_bias_grad(dbias: Tensor, rpb: Tensor, problem: Problem) -> Tensor:
    """Per-(query, tap) sums ``(heads, X, Y, Z, kx*ky*kz)`` folded into the ``(heads, 2kx-1, 2ky-1, 2kz-1)`` table."""
    axes = []
    for length, kernel, dilation in zip(problem.shape, problem.kernel_size, problem.dilation):
        axes.append(_bias_index(length, kernel, dilation, dbias.device)[:, None]
                    + torch.arange(kernel, device=dbias.device))                     # (length, kernel)
    (ix, iy, iz), (_, ny, nz) = axes, rpb.shape[1:]
    index = ((ix[:, None, None, :, None, None] * ny + iy[None, :, None, None, :, None]) * nz
             + iz[None, None, :, None, None, :])                                          # (X, Y, Z, kx, ky, kz)
    grad = torch.zeros((rpb.shape[0], rpb[0].numel()), dtype=torch.float32, device=dbias.device)
    grad.index_add_(1, index.reshape(-1), dbias.view(rpb.shape[0], -1))
    return grad.view(rpb.shape).to(rpb.dtype)


def backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], lse: Tensor,
             kernel_size: Sequence[int], dilation: Sequence[int], stride: Sequence[int], is_causal: Sequence[bool],
             scale: float, interpreted: bool,
             tiles: Optional[tuple[TileConfig, TileConfig]] = None) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """dQ, dK, dV (contiguous, in q's dtype) and dRPB (rpb's dtype; None without rpb).

    ``tiles``: run these (dQ, dK/dV) configurations instead of autotuning (benchmarks and tests)."""
    batch, _, _, _, heads, _ = q.shape
    grad_q, grad_k, grad_v = (torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    grad_rpb = None if rpb is None else torch.zeros_like(rpb)
    if grad_q.numel() == 0 or lse.numel() == 0:
        return grad_q, grad_k, grad_v, grad_rpb
    problem = _problem(q, kernel_size, dilation, stride, is_causal)
    lse = lse.contiguous()
    delta = torch.empty_like(lse)  # rowsum(dP * P) / rowsum(P), laid out like lse: the dQ kernel writes it
    dbias = (torch.zeros((heads, *problem.shape, math.prod(problem.kernel_size)), dtype=torch.float32,
                         device=q.device) if rpb is not None else lse.new_zeros(1))
    rpb_t, *rpb_strides = _rpb_args(rpb, q)
    common = (*q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *grad_q.stride(), *rpb_strides,
              *_geometry_args(problem, heads), scale, scale * _LOG2E, *_window_args(problem))
    constants = _constants(problem, rpb, interpreted)
    dq_tile, dkdv_tile = tiles if tiles is not None else (None, None)
    _launch('dq', problem, batch, heads, interpreted, dq_tile,
            q, k, v, rpb_t, grad_out, lse, delta, grad_q, dbias, *common, **constants)
    _launch('dkdv', problem, batch, heads, interpreted, dkdv_tile,
            q, k, v, rpb_t, grad_out, lse, delta, grad_k, grad_v, *common, **constants)
    if rpb is not None:
        grad_rpb = _fold_bias_grad(dbias, rpb, problem)
    return grad_q, grad_k, grad_v, grad_rpb
