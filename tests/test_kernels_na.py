"""The N-D neighbourhood attention kernels (``visionattn.kernels.na``) against an explicit reference.

The kernels run on Triton's CPU interpreter (TRITON_INTERPRET=1, set by conftest.py), called directly
with the kernel interface of SPEC_NA.md (3-D; 1-D/2-D problems have unit leading axes). The reference
below is written from SPEC_NA.md's semantics in NATTEN's own formulation (stride-group leader, window
centre clamped into the axis, causal windows ending at the query), independently of the kernels' closed
forms: it lists each query's window keys and runs a float64 softmax over exactly them, so its values,
gradients (plain autograd) and non-finite positions are those of the per-query formulas.
"""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import pytest
import torch

from visionattn.ops.dispatch import triton_importable

pytestmark = [pytest.mark.skipif(not triton_importable(), reason='Triton is not installed'),
              # numpy's warnings from the interpreter's masked lanes (0/0, log 0) and the non-finite inputs
              pytest.mark.filterwarnings('ignore::RuntimeWarning:triton.runtime.interpreter')]

if triton_importable():
    from visionattn.kernels import na

UNIT_AXIS = (1, 1, 1, 1, False)  # length, kernel, dilation, stride, causal


# --------------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------------

def axis_windows(length: int, kernel: int, dilation: int, stride: int, causal: bool) -> list[list[tuple[int, int]]]:
    """Per map position along one axis: its window as (key map position, rpb index) pairs."""
    windows = []
    for i in range(length):
        group, ip = i % dilation, i // dilation
        group_len = (length - group + dilation - 1) // dilation
        if causal:  # the leader is the last query of the stride group; the window ends at the query
            leader = min(ip // stride * stride + stride - 1, group_len - 1)
            keys = [kp for kp in range(group_len) if kp <= ip and leader - kp < kernel]
        else:  # the leader is the stride group's centre; the window's centre is clamped into the axis
            leader = min(ip // stride * stride + stride // 2, group_len - 1)
            left, right = kernel // 2, kernel // 2 + kernel % 2 - 1
            centre = min(max(leader, left), group_len - 1 - right)
            keys = [kp for kp in range(group_len) if -left <= kp - centre <= right]
        windows.append([(kp * dilation + group, kp - ip + kernel - 1) for kp in keys])
    return windows


def reference(q, k, v, rpb, problem: dict):
    """Per-query softmax over each query's window in float64: (out, lse) like the kernels'."""
    batch, X, Y, Z, heads, dim = q.shape
    axes = [axis_windows(*axis) for axis in problem['axes']]
    tokens = X * Y * Z
    windows = [[((kx * Y + ky) * Z + kz, (bx, by, bz)) for kx, bx in axes[0][x] for ky, by in axes[1][y]
                for kz, bz in axes[2][z]] for x in range(X) for y in range(Y) for z in range(Z)]
    width = max(len(w) for w in windows)
    index = torch.full((tokens, width), tokens)          # empty slots read an appended zero row
    in_window = torch.zeros(tokens, width, dtype=torch.bool)
    bias_index = torch.zeros(tokens, width, 3, dtype=torch.long)
    for t, window in enumerate(windows):
        for slot, (key, bias) in enumerate(window):
            index[t, slot], in_window[t, slot], bias_index[t, slot] = key, True, torch.tensor(bias)

    def rows(x):  # (B, X, Y, Z, heads, D) -> (B, heads, tokens + 1, D) float64, the last row zero
        flat = x.double().permute(0, 4, 1, 2, 3, 5).reshape(batch, heads, tokens, dim)
        return torch.cat([flat, flat.new_zeros(batch, heads, 1, dim)], 2)

    logits = (rows(q)[:, :, :tokens, None] * rows(k)[:, :, index]).sum(-1) * problem['scale']
    if rpb is not None:
        logits = logits + rpb.double()[:, bias_index[..., 0], bias_index[..., 1], bias_index[..., 2]]
    logits = torch.where(in_window, logits, -math.inf)
    out = (logits.softmax(-1)[..., None] * rows(v)[:, :, index]).sum(-2)
    lse = logits.logsumexp(-1).view(batch, heads, X, Y, Z)
    return out.view(batch, heads, X, Y, Z, dim).permute(0, 2, 3, 4, 1, 5), lse


# --------------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------------

def random_problem(rng: random.Random, ndim: int, with_rpb: bool, max_kernel: int = 5) -> dict:
    """``ndim`` active trailing axes: kernel 2..max_kernel (even ones included), dilation 1-2 (L % d often
    != 0), and with ``with_rpb`` NA/DiNAT's case (stride 1, not causal, RPB), else stride 1, between 1 and
    the kernel, or the kernel, and causal or not per axis."""
    axes = []
    for _ in range(ndim):
        kernel = rng.randint(2, max_kernel)
        dilation = rng.choice([1, 2]) if kernel <= 4 else 1
        stride = 1 if with_rpb else rng.choice([1, rng.randint(2, max(2, kernel - 1)), kernel])
        causal = not with_rpb and rng.random() < 0.4
        axes.append((rng.randint(kernel * dilation, kernel * dilation + 3), kernel, dilation, min(stride, kernel),
                     causal))
    return dict(axes=[UNIT_AXIS] * (3 - ndim) + axes, scale=rng.choice([0.3, 0.7]), rpb=with_rpb)


def kernel_args(problem: dict) -> tuple:
    _, kernel, dilation, stride, causal = zip(*problem['axes'])
    return kernel, dilation, stride, causal, problem['scale'], True


def make_inputs(problem: dict, batch: int, heads: int, dim: int, dtype: torch.dtype, fused: bool = False,
                rpb_dtype: torch.dtype = torch.float32):
    shape = tuple(axis[0] for axis in problem['axes'])
    if fused:  # views of one qkv projection: non-contiguous
        q, k, v = torch.randn(batch, *shape, heads, 3, dim, dtype=dtype).unbind(-2)
    else:
        q, k, v = (torch.randn(batch, *shape, heads, dim, dtype=dtype) for _ in range(3))
    kernel = [axis[1] for axis in problem['axes']]
    rpb = torch.randn(heads, *(2 * kk - 1 for kk in kernel), dtype=rpb_dtype) if problem['rpb'] else None
    return q, k, v, rpb


def random_tiles(rng: random.Random, problem: dict):
    """Small explicit tiles (so that tiny maps cross tiles and chunks: 2 or 4 lanes per axis for tiles,
    4 or 8 for chunks), or None: the interpreter's tile (the interpreter's cost is per program)."""
    if rng.random() < 0.5:
        return None, None

    def block(sizes):
        return tuple(rng.choice(sizes) if axis[0] > 1 else 1 for axis in problem['axes'])

    forward_tile = na.TileConfig(block([2, 4]), block([4, 8]))
    return forward_tile, (na.TileConfig(block([2, 4]), block([4, 8])), na.TileConfig(block([4, 8]), block([2, 4])))


def run_kernels(q, k, v, rpb, problem, grad_out, tile=None, tiles=None):
    out, lse = na.forward(q, k, v, rpb, *kernel_args(problem), tile=tile)
    grads = na.backward(grad_out, q, k, v, rpb, lse, *kernel_args(problem), tiles=tiles)
    return out, lse, grads


def run_reference(q, k, v, rpb, problem, grad_out):
    inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    if rpb is not None:
        inputs.append(rpb.detach().double().requires_grad_())
    out, lse = reference(*inputs[:3], inputs[3] if rpb is not None else None, problem)
    grads = torch.autograd.grad(out, inputs, grad_out.double())
    return out, lse, grads


TOLERANCE = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.float16: dict(atol=2e-2, rtol=2e-2),
             torch.bfloat16: dict(atol=6e-2, rtol=5e-2)}


# --------------------------------------------------------------------------------------------------
# Values and gradients
# --------------------------------------------------------------------------------------------------

CASES = [(seed, torch.float32) for seed in range(12)] + [(12, torch.float16), (13, torch.bfloat16)]


@pytest.mark.parametrize('seed, dtype', CASES)
def test_kernels_match_reference(seed, dtype):
    rng = random.Random(seed)
    problem = random_problem(rng, ndim=1 + seed % 3, with_rpb=seed % 4 == 0, max_kernel=5 if seed % 3 < 2 else 3)
    q, k, v, rpb = make_inputs(problem, batch=1 + (seed % 4 == 3), heads=1 + (seed % 4 == 2),
                               dim=rng.choice([4, 8, 16]), dtype=dtype, fused=seed % 4 == 1,
                               rpb_dtype=dtype if seed % 8 == 4 else torch.float32)  # float32 or q's
    grad_out = torch.randn(q.shape, dtype=dtype)
    tile, tiles = random_tiles(rng, problem)
    out, lse, grads = run_kernels(q, k, v, rpb, problem, grad_out, tile, tiles)
    want_out, want_lse, want_grads = run_reference(q, k, v, rpb, problem, grad_out)

    assert out.dtype == dtype and out.is_contiguous() and lse.dtype == torch.float32
    assert all(g.dtype == dtype and g.is_contiguous() for g in grads[:3])
    assert (grads[3] is None) == (rpb is None) and (rpb is None or grads[3].dtype == rpb.dtype)
    context = f'{problem}, tiles {tile}, {tiles}'
    torch.testing.assert_close(out.double(), want_out, **TOLERANCE[dtype], msg=lambda m: f'out: {m}\n{context}')
    torch.testing.assert_close(lse.double(), want_lse, **TOLERANCE[torch.float32], msg=lambda m: f'lse: {m}\n{context}')
    tol = {key: 4 * value for key, value in TOLERANCE[dtype].items()}
    for name, got, want in zip(('dq', 'dk', 'dv', 'drpb'), grads, want_grads):
        torch.testing.assert_close(got.double(), want, **tol, msg=lambda m: f'{name}: {m}\n{context}')


def test_blocked_attention_at_stride_equal_kernel():
    """stride = kernel is blocked attention: non-overlapping windows, each query attends its own block."""
    problem = dict(axes=[UNIT_AXIS, (6, 3, 1, 3, False), (8, 4, 1, 4, False)], scale=0.5, rpb=False)
    q, k, v, _ = make_inputs(problem, batch=1, heads=1, dim=4, dtype=torch.float32)
    out, _ = na.forward(q, k, v, None, *kernel_args(problem))
    blocks = lambda t: t[0, 0, :, :, 0].reshape(2, 3, 2, 4, 4).permute(0, 2, 1, 3, 4).reshape(4, 12, 4)  # noqa: E731
    want = torch.softmax(blocks(q) @ blocks(k).transpose(1, 2) * 0.5, -1) @ blocks(v)
    torch.testing.assert_close(blocks(out), want, atol=1e-5, rtol=1e-5)


def test_host_window_rule_matches_reference():
    """``window_bounds`` (used for the tile choice) is the reference's window rule, in group coordinates."""
    for length in range(2, 12):
        for kernel in range(2, length + 1):
            for stride in range(1, kernel + 1):
                for causal in (False, True):
                    windows = axis_windows(length, kernel, 1, stride, causal)
                    for pos, window in enumerate(windows):
                        keys = [key for key, _ in window]
                        assert na.window_bounds(pos, length, kernel, stride, causal) == (keys[0], keys[-1] + 1)


def test_tile_candidates_are_few_valid_and_cover_the_boxes():
    for problem in (na.Problem((1, 56, 56), (1, 7, 7), (1, 1, 1), (1, 1, 1), (False,) * 3, 32, torch.float16),
                    na.Problem((1, 1, 4096), (1, 1, 255), (1, 1, 1), (1, 1, 64), (False, False, True), 64,
                               torch.bfloat16),
                    na.Problem((8, 28, 28), (3, 7, 7), (1, 2, 2), (1, 7, 7), (True, False, False), 64, torch.float16)):
        for kind in na.KINDS:
            configs = na.tile_candidates(problem, kind)
            assert 1 <= len(configs) <= 10 and len(set(configs)) == len(configs)
            for config in configs:
                assert math.prod(config.query) >= 16 and math.prod(config.key) >= 16  # tl.dot's minimum
                assert all(b & (b - 1) == 0 for b in (*config.query, *config.key))
    # stride = kernel on a 2-D map: the 64-lane tile holds one stride group per axis, 8 x 8 = its window
    problem = na.Problem((1, 64, 64), (1, 8, 8), (1, 1, 1), (1, 8, 8), (False,) * 3, 32, torch.float16)
    assert na.TileConfig((1, 8, 8), (1, 8, 8), 4, 3) in na.tile_candidates(problem, 'forward')
    with pytest.raises(ValueError, match='kind'):
        na.tile_candidates(problem, 'backward')
    # the autotuners (run on a GPU only) name real kernel arguments in their key and reset list
    for name in ('forward', 'dq', 'dkdv'):
        tuner = na._autotuned(name, tuple(na.tile_candidates(problem, 'dkdv' if name == 'dkdv' else 'forward')))
        assert set(tuner.keys) <= set(tuner.arg_names) and set(tuner.reset_to_zero) <= set(tuner.arg_names)


# --------------------------------------------------------------------------------------------------
# Non-finite locality and empty inputs
# --------------------------------------------------------------------------------------------------

def nonfinite_queries(x: torch.Tensor) -> torch.Tensor:
    """Per position (batch, X, Y, Z, heads): any channel non-finite."""
    return ~torch.isfinite(x).all(-1)


@pytest.mark.parametrize('seed', range(6))
def test_nonfinite_inputs_stay_in_their_windows(seed):
    """A NaN/inf in q, k or v at a random position: exactly the queries (and gradient rows) the
    per-query formulas make non-finite are non-finite; everything else matches the reference."""
    rng = random.Random(1000 + seed)
    problem = random_problem(rng, ndim=2 if seed < 4 else 1 + 2 * (seed % 2), with_rpb=seed % 2 == 0,
                             max_kernel=5 if seed < 5 else 3)
    q, k, v, rpb = make_inputs(problem, batch=1, heads=1, dim=4, dtype=torch.float32)
    value = [float('nan'), float('inf'), -float('inf')][seed % 3]
    name = 'qkv'[rng.randrange(3)] if seed >= 3 else 'qkv'[seed]
    target = dict(q=q, k=k, v=v)[name]
    position = tuple(rng.randrange(n) for n in target.shape[1:4])
    target[(0, *position, 0, rng.randrange(4))] = value
    grad_out = torch.randn(q.shape)
    out, lse, grads = run_kernels(q, k, v, rpb, problem, grad_out, *random_tiles(rng, problem))
    want_out, _, want_grads = run_reference(q, k, v, rpb, problem, grad_out)

    context = f'{value} in {name} at {position}, {problem}'
    if name in 'kv' and math.isnan(value):  # the property in words: exactly the windows holding the key
        axes = [axis_windows(*axis) for axis in problem['axes']]
        holds = torch.tensor([[[all(position[a] in [key for key, _ in axes[a][p]] for a, p in enumerate((x, y, z)))
                                for z in range(q.shape[3])] for y in range(q.shape[2])] for x in range(q.shape[1])])
        assert torch.equal(nonfinite_queries(out)[0, ..., 0], holds), context
    for label, got, want in zip(('out', 'dq', 'dk', 'dv', 'drpb'), (out, *grads), (want_out, *want_grads)):
        if label == 'drpb':
            got, want = got[..., None], want[..., None]  # per table entry
        bad = nonfinite_queries(got)
        assert torch.equal(bad, nonfinite_queries(want)), f'{label}: {context}'
        torch.testing.assert_close(got[~bad].double(), want[~bad], atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f'{label}: {m}\n{context}')
    assert not nonfinite_queries(out).all(), context  # never everything


@pytest.mark.parametrize('batch, heads', [(0, 2), (2, 0)])
def test_empty_batch_and_zero_heads(batch, heads):
    problem = dict(axes=[UNIT_AXIS, (5, 3, 1, 1, False), (6, 3, 1, 1, False)], scale=0.5, rpb=True)
    q, k, v, rpb = make_inputs(problem, batch=batch, heads=heads, dim=8, dtype=torch.float16)
    out, lse = na.forward(q, k, v, rpb, *kernel_args(problem))
    assert out.shape == q.shape and lse.shape == (batch, heads, 1, 5, 6)
    grads = na.backward(out, q, k, v, rpb, lse, *kernel_args(problem))
    assert all(g.shape == q.shape and g.dtype == q.dtype for g in grads[:3])
    assert grads[3].shape == rpb.shape and not grads[3].any()


# --------------------------------------------------------------------------------------------------
# Compilation for a GPU (no GPU needed): what the interpreter does not check
# --------------------------------------------------------------------------------------------------

AOT_COMPILE = """
import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from visionattn.kernels import na

cases = [  # (dtype, problem, rpb, which candidate): 2-D with RPB in fp16, 3-D strided causal in bf16
    ('fp16', na.Problem((1, 56, 56), (1, 7, 7), (1, 1, 1), (1, 1, 1), (False,) * 3, 32, torch.float16), True, 0),
    ('bf16', na.Problem((8, 28, 28), (3, 7, 7), (1, 2, 1), (1, 7, 3), (True, False, False), 64, torch.bfloat16),
     False, -1),
]
pointers = dict(RPB='fp32', LSE='fp32', DELTA='fp32', DBIAS='fp32')  # the others: q's dtype
for dtype, problem, has_rpb, which in cases:
    for name, kernel in na._KERNELS.items():
        config = na.tile_candidates(problem, 'dkdv' if name == 'dkdv' else 'forward')[which]
        constants = dict(zip(('CAUSAL_X', 'CAUSAL_Y', 'CAUSAL_Z'), problem.is_causal), HAS_RPB=has_rpb,
                         BLOCK_D=max(16, problem.head_dim), PRECISION='tf32', FP32_DOT=False, IDX=tl.int32,
                         **config.kwargs())
        tensors = ('Q', 'K', 'V', 'OUT', 'DO', 'DQ', 'DK', 'DV', *pointers)
        signature = {arg: 'constexpr' if arg in constants else f'*{pointers.get(arg, dtype)}' if arg in tensors
                     else 'fp32' if 'scale' in arg else 'i32' for arg in kernel.arg_names}
        compiled = triton.compile(ASTSource(kernel, signature, constants), target=GPUTarget('cuda', 90, 32),
                                  options=dict(num_warps=config.num_warps, num_stages=config.num_stages))
        assert 'mma' in compiled.asm['ptx'], (name, config)
        print(name, config, 'shared memory', compiled.metadata.shared)
print('compiled')
"""


@pytest.mark.slow
def test_kernels_compile_for_hopper():
    """Compile (no GPU needed) what the interpreter does not check: Triton's language rules, dot shapes;
    each kernel for two problems, with the first and the last autotuning candidate."""
    env = {**os.environ, 'TRITON_INTERPRET': '0'}
    result = subprocess.run([sys.executable, '-c', AOT_COMPILE], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and 'compiled' in result.stdout, result.stderr[-3000:]
