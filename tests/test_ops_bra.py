"""Bi-level routing attention ops against upstream's gather formulation (bra_legacy.py semantics)."""
from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading

import pytest
import torch

from visionattn.errors import UnsupportedBackendError
from visionattn.ops import bi_level_routing_attention, bra_attention, bra_attention_reference, bra_routing, use_backend
from visionattn.ops import routing
from visionattn.ops.dispatch import select_backend


def make_qkv(batch, height, width, heads, head_dim, head_dim_v=None, dtype=torch.float32):
    shape = (batch, height, width, heads)
    return [torch.randn(*shape, d).to(dtype).requires_grad_() for d in (head_dim, head_dim, head_dim_v or head_dim)]


def random_index(batch, regions, topk):
    """Distinct routed regions per query region, in random order (what torch.topk may return)."""
    return torch.stack([torch.randperm(regions)[:topk] for _ in range(batch * regions)]).view(batch, regions, topk)


def random_problem(rng: random.Random, masked: bool) -> dict:
    grid = (rng.randint(1, 3), rng.randint(1, 3))
    region = (rng.randint(1, 3), rng.randint(1, 3))
    batch, heads = rng.randint(1, 2), rng.randint(1, 3)
    head_dims = rng.choice([(4, 4), (8, 8), (5, 3)])
    height, width = grid[0] * region[0], grid[1] * region[1]
    mask = None
    if masked:
        mask = torch.rand(rng.choice([1, batch]), height, width) > 0.3
        mask[0, :region[0], :region[1]] = False  # a region without any key
    return dict(shape=(batch, height, width, heads, *head_dims), grid=grid,
                topk=rng.randint(1, grid[0] * grid[1]), mask=mask)


def check_against_reference(problem: dict, backend: str, dtype=torch.float32, atol=1e-5) -> None:
    """Forward and (dq, dk, dv) of bra_attention against the float64 'reference' backend (upstream's gather)."""
    batch, height, width, heads, head_dim, head_dim_v = problem['shape']
    q, k, v = make_qkv(batch, height, width, heads, head_dim, head_dim_v, dtype=dtype)
    index = random_index(batch, problem['grid'][0] * problem['grid'][1], problem['topk'])
    mask = problem['mask']
    scale = problem.get('scale')
    out = bra_attention(q, k, v, index, problem['grid'], scale=scale, key_mask=mask, backend=backend)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = bra_attention(q64, k64, v64, index, problem['grid'], scale=scale, key_mask=mask, backend='reference')
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=atol)
    grad_out = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (q, k, v), grad_out.to(dtype))
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), grad_out)
    for name, got, want in zip('qkv', grads, ref_grads):
        assert got.dtype == dtype and got.shape == want.shape, name
        torch.testing.assert_close(got.double(), want, atol=4 * atol, rtol=4 * atol, msg=f'd{name} differs')


def upstream_routing(q, k, n_win, topk, scale):
    """Routing as bra_legacy.py writes it: window means over all channels, scaled affinity, top-k."""
    batch, height, width = q.shape[:3]

    def window_means(x):
        x = x.flatten(3).reshape(batch, n_win, height // n_win, n_win, width // n_win, -1)
        return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, n_win * n_win, -1, x.shape[-1]).mean(2)

    return torch.topk((window_means(q) * scale) @ window_means(k).transpose(-2, -1), topk, dim=-1).indices


def explicit_attention(q, k, v, index, grid, scale, key_mask=None):
    """Per query and head in float64: softmax over exactly the unmasked tokens of the routed regions."""
    batch, height, width, heads, _ = q.shape
    region_h, region_w = height // grid[0], width // grid[1]
    out = torch.zeros(*q.shape[:4], v.shape[-1], dtype=torch.float64)
    for b, y, x in itertools.product(range(batch), range(height), range(width)):
        keys = [(ky, kx) for r in index[b, (y // region_h) * grid[1] + x // region_w].tolist()
                for ky in range(r // grid[1] * region_h, (r // grid[1] + 1) * region_h)
                for kx in range(r % grid[1] * region_w, (r % grid[1] + 1) * region_w)
                if key_mask is None or key_mask[b % key_mask.shape[0], ky, kx]]
        if not keys:
            continue
        ys, xs = torch.tensor(keys).T
        for h in range(heads):
            logits = (k[b, ys, xs, h].double() @ q[b, y, x, h].double()) * scale
            out[b, y, x, h] = torch.softmax(logits, 0) @ v[b, ys, xs, h].double()
    return out


# --------------------------------------------------------------------------------------------------
# 'reference' backend (upstream's gather): the truth of the other tests
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('seed', range(4))
def test_reference_backend_matches_explicit_per_query_attention(seed):
    problem = random_problem(random.Random(seed), masked=seed % 2 == 1)
    batch, height, width, heads, head_dim, head_dim_v = problem['shape']
    q, k, v = make_qkv(batch, height, width, heads, head_dim, head_dim_v)
    index = random_index(batch, problem['grid'][0] * problem['grid'][1], problem['topk'])
    out = bra_attention(q, k, v, index, problem['grid'], scale=0.6, key_mask=problem['mask'], backend='reference')
    want = explicit_attention(q, k, v, index, problem['grid'], 0.6, problem['mask'])
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)


def autograd_nodes(out):
    """Names of the autograd nodes behind ``out``."""
    seen, stack = {}, [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = type(node).__name__
            stack.extend(parent for parent, _ in node.next_functions)
    return set(seen.values())


def test_reference_backend_is_selected_by_name_and_by_use_backend_and_runs_plain_pytorch():
    q, k, v = make_qkv(1, 4, 4, 2, 4)
    index = random_index(1, 4, 2)
    with use_backend('reference'):
        under_context = bra_attention(q, k, v, index, 2, key_mask=torch.rand(1, 4, 4) > 0.2)
    nodes = autograd_nodes(under_context)
    assert {'IndexSelectBackward0', 'SoftmaxBackward0'} <= nodes  # the gather, in plain PyTorch autograd
    assert not any('visionattn' in name for name in nodes)
    assert any('visionattn' in name for name in autograd_nodes(bra_attention(q, k, v, index, 2, backend='torch')))
    with use_backend('reference'):
        under_context = bra_attention(q, k, v, index, 2)
    torch.testing.assert_close(under_context, bra_attention(q, k, v, index, 2, backend='reference'), rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="backend='reference'"):
        old_name = bra_attention_reference(q, k, v, index, 2)
    torch.testing.assert_close(old_name, under_context, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# PyTorch path
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('masked', [False, True])
def test_torch_path_matches_gather(seed, masked):
    check_against_reference(random_problem(random.Random(seed), masked), 'torch')


@pytest.mark.parametrize('dtype,atol', [(torch.float16, 2e-2), (torch.bfloat16, 6e-2)])
def test_torch_path_half_precision(dtype, atol):
    problem = random_problem(random.Random(7), masked=True)
    check_against_reference(problem, 'torch', dtype=dtype, atol=atol)


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.bfloat16, 6e-2)])
def test_torch_path_tiles_keys_queries_and_rows(monkeypatch, dtype, atol):
    """Tiny budgets force several key groups (online softmax, recomputed in the backward), query chunks
    and row chunks; bfloat16 inputs are gathered into float32 step buffers."""
    monkeypatch.setattr(routing, '_STEP_BUDGET', 272)  # 2 heads, 12-token regions: 1 region, 2 queries, 1 row a step
    mask = torch.rand(2, 6, 8) > 0.4
    mask[1, :3, :4] = False
    check_against_reference(dict(shape=(2, 6, 8, 2, 4, 4), grid=(2, 2), topk=4, mask=mask), 'torch', dtype, atol)


def test_torch_path_reuses_its_step_buffer_without_aliasing_results():
    """The CPU step buffer is kept between calls: results of one call must not change with the next, in
    this thread or another, and a buffer first made under inference mode must serve a later training call."""
    index = random_index(2, 4, 2)
    first, second = make_qkv(2, 4, 6, 2, 4), make_qkv(2, 4, 6, 2, 4)
    routing.release_step_buffers()
    with torch.inference_mode():
        bra_attention(*(t.detach() for t in second), index, (2, 2), backend='torch')

    def run(qkv):
        out = bra_attention(*qkv, index, (2, 2), backend='torch')
        return (out.detach(), *torch.autograd.grad(out, qkv, torch.ones_like(out)))

    results = run(first)
    kept = [t.clone() for t in results]
    serial = run(second)
    in_threads = []
    threads = [threading.Thread(target=lambda: in_threads.append(run(second))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(in_threads) == 2 and all(torch.equal(a, b) for got in in_threads for a, b in zip(got, serial))
    for got, want in zip(results, kept):
        assert torch.equal(got, want)
    for got, want in zip(run(first), kept):  # the same result from a buffer other calls wrote
        assert torch.equal(got, want)
    routing.release_step_buffers()  # and from a new one
    for got, want in zip(run(first), kept):
        assert torch.equal(got, want)


def test_gradcheck_float64():
    q, k, v = make_qkv(1, 2, 6, 2, 2, 1, dtype=torch.float64)
    index = torch.tensor([[[0, 2], [1, 0], [2, 1]]])
    mask = torch.ones(1, 2, 6, dtype=torch.bool)
    mask[0, :, :2] = False  # region 0 without keys
    mask[0, 1, 3] = False
    assert torch.autograd.gradcheck(
        lambda q, k, v: bra_attention(q, k, v, index, (1, 3), key_mask=mask, backend='torch'), (q, k, v))


def test_fully_masked_query_gets_zero_output_and_gradient():
    q, k, v = make_qkv(1, 4, 4, 1, 4)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = False
    index = torch.tensor([[[0], [1], [2], [3]]])  # region 0 routes only to itself
    out = bra_attention(q, k, v, index, 2, key_mask=mask, backend='torch')
    assert torch.isfinite(out).all() and out[0, :2, :2].abs().max() == 0
    out.sum().backward()
    assert q.grad[0, :2, :2].abs().max() == 0 and torch.isfinite(q.grad).all()


# --------------------------------------------------------------------------------------------------
# Triton kernels (TRITON_INTERPRET=1 on CPU: tiny problems)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('masked', [False, True])
def test_triton_matches_gather(seed, masked):
    check_against_reference(random_problem(random.Random(seed), masked), 'triton')


@pytest.mark.parametrize('dtype,atol', [(torch.float16, 2e-2), (torch.bfloat16, 6e-2)])
def test_triton_half_precision(dtype, atol):
    check_against_reference(random_problem(random.Random(7), masked=True), 'triton', dtype=dtype, atol=atol)


def test_triton_regions_larger_than_a_tile():
    """80-token regions: two query tiles per region, routed keys and routed queries over several tiles."""
    mask = torch.rand(1, 10, 16) > 0.2
    check_against_reference(dict(shape=(1, 10, 16, 1, 4, 4), grid=(1, 2), topk=2, mask=mask, scale=0.7), 'triton')


@pytest.mark.parametrize('backend', ['torch', 'triton'])
def test_single_token_regions_and_topk_of_all_regions(backend):
    check_against_reference(dict(shape=(1, 3, 3, 2, 4, 4), grid=(3, 3), topk=9, mask=None), backend)


def test_triton_reads_strided_views_and_matches_torch_path():
    x = torch.randn(2, 4, 4, 3 * 2 * 8)
    q, k, v = x.unflatten(-1, (3, 2, 8)).unbind(3)  # views with a stride of 48 between tokens
    index = random_index(2, 4, 3)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = False  # region 0 has no keys: queries routed only there get zeros
    out = bra_attention(q, k, v, index, 2, key_mask=mask, backend='triton')
    torch.testing.assert_close(out, bra_attention(q, k, v, index, 2, key_mask=mask, backend='torch'))


AOT_COMPILE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from visionattn.kernels import bra

pointers = dict(IDX='*i64', MASK='*u8', LSE='*fp32', DELTA='*fp32', QREGIONS='*i32', OFFSETS='*i32')
for dtype in ('bf16',):
    constants = dict(HEAD_DIM=32, HEAD_DIM_V=32, GRID_W=7, REGION_H=2, REGION_W=2, HAS_MASK=True, BLOCK_D=32,
                     BLOCK_DV=32, PRECISION='tf32', UPCAST_DOT=False, BLOCK_M=16, BLOCK_N=64)
    for kernel in (bra._forward_kernel, bra._backward_dq_kernel, bra._backward_dkdv_kernel):
        signature = {name: 'constexpr' if name in constants else pointers.get(name, f'*{dtype}') if name.isupper()
                     else 'fp32' if 'scale' in name else 'i32' for name in kernel.arg_names}
        compiled = triton.compile(ASTSource(kernel, signature, constants), target=GPUTarget('cuda', 90, 32),
                                  options=dict(num_warps=4))
        assert 'mma' in compiled.asm['ptx'], kernel.__name__
print('compiled')
"""


@pytest.mark.slow
def test_triton_kernels_compile_for_hopper():
    """Compile (no GPU needed) what the interpreter does not check: Triton's language rules, dot shapes."""
    env = {**os.environ, 'TRITON_INTERPRET': '0'}
    result = subprocess.run([sys.executable, '-c', AOT_COMPILE], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and 'compiled' in result.stdout, result.stderr[-3000:]


# --------------------------------------------------------------------------------------------------
# 'flex' backend (FlexAttention); the compiled forward is tested in test_ops_bra_numerics.py (slow)
# --------------------------------------------------------------------------------------------------
def test_flex_backend_is_in_the_capability_table():
    q = torch.zeros(1, 4, 4, 2, 8)
    assert select_backend('bra', 'flex', q) == 'flex'
    assert select_backend('bra', 'auto', q) == 'torch'
    with pytest.raises(UnsupportedBackendError, match="'flex' cannot run bra here: .*not float64"):
        select_backend('bra', 'flex', q.double())


def test_flex_block_mask_is_the_routing_one_region_per_block():
    """Blocks are (query region, routed region) pairs, full where every key slot is a real unmasked token,
    and mask_mod admits exactly the attended (query, key) token pairs."""
    from torch.nn.attention.flex_attention import create_mask

    batch, grid, region = 2, (1, 3), (4, 4)  # 16-token regions fill their 16-slot blocks
    height, width, regions, slots = grid[0] * region[0], grid[1] * region[1], 3, 16
    index = random_index(batch, regions, 2)
    key_mask = torch.rand(batch, height, width) > 0.3
    key_mask[:, :, :4] = True  # region 0 has every key: its blocks are full
    key_valid = routing._to_regions(key_mask, *grid).view(batch, regions, slots)
    block_mask = routing._flex_block_mask(index, key_valid)
    routed = torch.zeros(batch, regions, regions, dtype=torch.bool).scatter_(2, index, True)
    assert torch.equal(block_mask.to_dense()[:, 0].bool(), routed)
    full = torch.zeros_like(routed)
    for b, r in itertools.product(range(batch), range(regions)):
        full[b, r, block_mask.full_kv_indices[b, 0, r, :block_mask.full_kv_num_blocks[b, 0, r]].long()] = True
    assert torch.equal(full, routed & key_valid.all(-1)[:, None, :])
    tokens = create_mask(block_mask.mask_mod, batch, 1, regions * slots, regions * slots, device='cpu')[:, 0]
    region_of = (torch.arange(width) // region[1]).repeat(height)  # tokens row-major over the map
    want = routed[:, region_of][:, :, region_of] & key_mask.flatten(1)[:, None, :]
    order = routing._to_regions(torch.arange(height * width).view(1, height, width), *grid).flatten()
    assert torch.equal(tokens, want[:, order][:, :, order])  # the sequence holds the map region-major


def test_flex_backend_has_no_cpu_backward():
    q, k, v = make_qkv(0, 4, 4, 2, 4)  # an empty batch needs no compiled kernel
    out = bra_attention(q, k, v, torch.zeros(0, 4, 2, dtype=torch.long), 2, backend='flex')
    assert out.shape == (0, 4, 4, 2, 4)
    with pytest.raises(UnsupportedBackendError, match="CPU kernel is inference-only"):
        out.sum().backward()


# --------------------------------------------------------------------------------------------------
# routing
# --------------------------------------------------------------------------------------------------
def test_routing_matches_upstream_and_uses_full_channel_scale():
    q, k, _ = make_qkv(2, 12, 12, 4, 8)
    expected = upstream_routing(q, k, 3, 4, scale=32 ** -0.5)
    torch.testing.assert_close(bra_routing(q, k, 3, 4), expected, rtol=0, atol=0)
    assert bra_routing(q, k, 3, 4).grad_fn is None


def test_masked_routing_averages_real_tokens_and_routes_empty_regions_last():
    q, k, _ = make_qkv(1, 4, 4, 1, 8)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    mask[0, 2:, 2:] = False  # region 3 has no real token
    mask[0, 0, 1] = False
    k.data[0, 0, 1] = 1e3  # a masked outlier must not move region 0's mean
    index = bra_routing(q, k, 2, 4, token_mask=mask)
    assert (index[0, :, -1] == 3).all()
    kept = mask[0].flatten().nonzero().squeeze(1)
    means = []
    for r in range(3):
        tokens = [t for t in kept.tolist() if (t // 4) // 2 * 2 + (t % 4) // 2 == r]
        means.append((q.flatten(0, 2)[tokens].flatten(1).mean(0), k.flatten(0, 2)[tokens].flatten(1).mean(0)))
    affinity = torch.stack([torch.stack([mq @ mk for _, mk in means]) for mq, _ in means]) * 8 ** -0.5
    torch.testing.assert_close(index[0, :3, :3], affinity.topk(3).indices, rtol=0, atol=0)


def test_bi_level_routing_attention_uses_upstream_scale_for_both_steps():
    q, k, v = make_qkv(1, 6, 6, 2, 4)
    scale = 8 ** -0.5
    index = upstream_routing(q, k, 3, 2, scale)
    expected = bra_attention(q, k, v, index, 3, scale=scale, backend='reference')
    torch.testing.assert_close(bi_level_routing_attention(q, k, v, 3, 2, backend='torch'), expected)


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors():
    q, k, v = make_qkv(1, 4, 6, 2, 4)
    index = random_index(1, 4, 2)
    with pytest.raises(ValueError, match='topk=5 must be between 1 and the number of regions'):
        bra_routing(q, k, 2, 5)
    with pytest.raises(ValueError, match='not divisible by the region grid 4x4: pad'):
        bra_attention(q, k, v, random_index(1, 16, 2), 4)
    with pytest.raises(ValueError, match='same shape'):
        bra_attention(q, k[:, :, :3], v, index, 2)
    with pytest.raises(TypeError, match='dtype'):
        bra_attention(q, k.double(), v, index, 2)
    with pytest.raises(TypeError, match='dtype and device of q'):
        bra_attention(q, k, v.half(), index, 2)
    with pytest.raises(ValueError, match=r'region_index must be .* \(batch=1, regions=4, topk\)'):
        bra_attention(q, k, v, index[:, :3], 2)
    with pytest.raises(ValueError, match='outside'):
        bra_attention(q, k, v, index + 2, 2)
    with pytest.raises(ValueError, match='same region twice'):
        bra_attention(q, k, v, torch.tensor([[[0, 1], [1, 1], [2, 0], [3, 2]]]), 2)
    with pytest.raises(ValueError, match='topk=5 must be between 1'):
        bra_attention(q, k, v, torch.zeros(1, 4, 5, dtype=torch.long), 2)
    with pytest.raises(ValueError, match='key_mask must be a bool tensor'):
        bra_attention(q, k, v, index, 2, key_mask=torch.ones(1, 4, 6))
    with pytest.raises(RuntimeError, match="backend 'triton' cannot run bra here: tensors are on cpu"), \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv('TRITON_INTERPRET', '0')
        bra_attention(q, k, v, index, 2, backend='triton')


def test_auto_backend_on_cpu_is_the_torch_path():
    q, k, v = make_qkv(1, 4, 4, 1, 4)
    index = random_index(1, 4, 2)
    with use_backend('auto'):
        out = bra_attention(q, k, v, index, 2)
    torch.testing.assert_close(out, bra_attention(q, k, v, index, 2, backend='torch'), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# torch.compile, torch.export, autocast
# --------------------------------------------------------------------------------------------------
class RoutedAttention(torch.nn.Module):
    def __init__(self, backend: str) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(8, 24)
        self.backend = backend

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, 2, 4)).unbind(3)
        return bi_level_routing_attention(q, k, v, 2, 2, token_mask=mask, backend=self.backend)


@pytest.mark.parametrize('backend', ['torch', 'triton'])
def test_torch_compile_fullgraph_forward_and_backward(backend):
    model = RoutedAttention(backend)
    x, mask = torch.randn(1, 4, 4, 8), torch.rand(1, 4, 4) > 0.2
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    torch.testing.assert_close(compiled(x, mask), model(x, mask))
    compiled(x, mask).sum().backward()
    grad = model.qkv.weight.grad.clone()
    model.zero_grad()
    model(x, mask).sum().backward()
    torch.testing.assert_close(grad, model.qkv.weight.grad)


@pytest.mark.parametrize('backend', ['torch', 'triton'])
def test_torch_export(backend):
    model = RoutedAttention(backend).eval()
    x, mask = torch.randn(1, 4, 6, 8), torch.rand(1, 4, 6) > 0.2
    exported = torch.export.export(model, (x, mask))
    assert any('bra_attention_forward' in str(node.target) for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(x, mask), model(x, mask))


def test_autocast_runs_in_the_autocast_dtype():
    q, k, v = make_qkv(1, 4, 4, 2, 4)
    index = random_index(1, 4, 2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = bra_attention(q, k, v, index, 2, backend='torch')
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert q.grad.dtype == torch.float32
    torch.testing.assert_close(out.float(), bra_attention(q, k, v, index, 2, backend='reference'), atol=3e-2, rtol=3e-2)


def test_flop_counter_counts_routed_attention_forward_and_backward():
    from torch.utils.flop_counter import FlopCounterMode
    b, h, w, heads, d, dv, grid, topk = 2, 8, 8, 2, 8, 16, 4, 3
    q = torch.randn(b, h, w, heads, d, requires_grad=True)
    k, v = torch.randn(b, h, w, heads, d), torch.randn(b, h, w, heads, dv)
    index = bra_routing(q.detach(), k, grid, topk)
    routed_keys = topk * (h // grid) * (w // grid)
    forward = 2 * b * heads * h * w * routed_keys * (d + dv)
    with FlopCounterMode(display=False) as counter:
        bra_attention(q, k, v, index, grid, backend='torch').sum().backward()
    assert counter.get_total_flops() == forward + 5 * forward // 2
