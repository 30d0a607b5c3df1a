"""tools/benchmark.py: FLOP counting, the isolated measurement, time-outs and the table."""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / 'tools'))
import benchmark  # noqa: E402


def test_flops_of_convolutions_and_matmuls_are_two_per_multiply_add() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 5 * 5, 10))
    macs = 8 * 3 * 9 * 5 * 5 + 8 * 5 * 5 * 10
    assert benchmark.count_flops(model, torch.randn(1, 3, 5, 5)) == 2 * macs


def test_flops_of_cpu_sdpa_are_counted() -> None:
    class Attention(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(q, q, q)

    batch, heads, tokens, dim = 2, 3, 16, 8
    flops = benchmark.count_flops(Attention(), torch.randn(batch, heads, tokens, dim))
    assert flops == 4 * batch * heads * tokens * tokens * dim


def test_flops_of_neighbourhood_attention_count_the_window() -> None:
    from visionattn.ops import na2d

    class Neighbourhood(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return na2d(q, q, q, kernel_size=3, dilation=2, backend='torch')

    batch, height, width, heads, dim = 1, 8, 7, 2, 4
    flops = benchmark.count_flops(Neighbourhood(), torch.randn(batch, height, width, heads, dim))
    assert flops == 4 * batch * height * width * heads * 9 * dim


def test_an_operator_without_formula_stops_the_count() -> None:
    @torch.library.custom_op('visionattn_test::opaque_matmul', mutates_args=())
    def opaque_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    class Opaque(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return opaque_matmul(x, x)

    with pytest.raises(RuntimeError, match='visionattn_test.opaque_matmul'):
        benchmark.count_flops(Opaque(), torch.randn(4, 4))


@pytest.mark.slow
def test_isolated_measurement_of_a_small_model() -> None:
    spec = benchmark.Spec(model='resnet18_triplet', img_size=64, batch=2, train_batch=2, flops=True, repeat=2,
                          budget_s=0.5, threads=1)
    row = benchmark.run_isolated(spec, timeout_s=300)
    assert 'error' not in row, row
    params = 11_690_000
    assert abs(row['params'] - params) < 10_000
    assert row['input_size'] == [3, 64, 64] and row['threads'] == 1
    assert 0.8 * 1.82e9 * 2 * (64 / 224) ** 2 < row['flops'] < 1.2 * 1.82e9 * 2 * (64 / 224) ** 2
    param_mib = row['params'] * 4 / 2 ** 20
    # inference holds the weights; a training step also gradients and AdamW's two moments
    assert param_mib < row['infer']['peak_mib'] < row['train']['peak_mib']
    assert row['train']['peak_mib'] > 3.5 * param_mib
    for mode in ('infer', 'train'):
        assert row[mode]['ms'] > 0 and row[mode]['img_s'] == pytest.approx(2e3 / row[mode]['ms'], rel=0.01)
    assert 'resnet18_triplet' in benchmark.format_table([row])


def test_a_row_that_runs_out_of_time_is_reported_not_raised() -> None:
    row = benchmark.run_isolated(benchmark.Spec(model='resnet18_cbam'), timeout_s=0.5)
    assert row['error'] == 'timed out after 0.5 s'
    assert row['spec']['model'] == 'resnet18_cbam'
    assert 'timed out' in benchmark.format_table([row])


def test_a_failing_row_carries_the_error() -> None:
    row = benchmark.run_isolated(benchmark.Spec(model='no_such_model', modes=('infer',)), timeout_s=300)
    assert 'unknown model' in row['error']


def test_upstream_implementations_exist_only_where_one_runs() -> None:
    args = benchmark.parse_args(['--models', 'resnet18_cbam', 'biformer_small', '--impl', 'ours', 'upstream',
                                 '--img-size', '0', '320'])
    specs = benchmark.specs_from_args(args)
    assert [(s.model, s.img_size, s.impl) for s in specs] == [
        ('resnet18_cbam', None, 'ours'), ('resnet18_cbam', 320, 'ours'),
        ('biformer_small', None, 'ours'), ('biformer_small', None, 'upstream'),
        ('biformer_small', 320, 'ours'), ('biformer_small', 320, 'upstream')]


def test_flops_of_routing_attention_count_the_routed_keys() -> None:
    from visionattn.ops import bi_level_routing_attention

    class Routing(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return bi_level_routing_attention(q, q, q, region_grid=4, topk=3, backend='torch')

    batch, side, heads, dim = 2, 8, 2, 4
    flops = benchmark.count_flops(Routing(), torch.randn(batch, side, side, heads, dim))
    regions, keys = 16, 3 * (side // 4) ** 2
    routing = 2 * batch * regions * regions * heads * dim  # region affinity: (regions x C) @ (C x regions)
    attention = 4 * batch * side * side * heads * keys * dim
    assert flops == routing + attention


def test_upstream_gather_attention_runs_inside_biformer() -> None:
    import timm

    from visionattn.ops import routing
    model = timm.create_model('biformer_tiny', depths=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), head_dim=16,
                              n_win=4, topks=(2, 3, 4, -2), num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)
    fast, reference, calls = routing.bra_attention, routing.bra_attention_reference, []

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return reference(*args, **kwargs)

    routing.bra_attention_reference = spy
    try:
        with benchmark.upstream_impl('biformer_tiny')[1](), torch.no_grad():
            upstream = model(x)
    finally:
        routing.bra_attention_reference = reference
    assert len(calls) == 3  # one routing-attention block per stage in the first three stages
    torch.testing.assert_close(upstream, ours, rtol=1e-4, atol=1e-5)
    assert routing.bra_attention is fast  # restored


def test_parameters_and_flops_only_at_any_size() -> None:
    spec = benchmark.Spec(model='resnet18_cbam', img_size=112, modes=(), flops=True)
    row = benchmark.run_isolated(spec, timeout_s=300)
    assert 'error' not in row and 'infer' not in row and 'train' not in row
    assert row['input_size'] == [3, 112, 112]
    import timm
    model = timm.create_model('resnet18_cbam').eval()
    assert row['params'] == sum(p.numel() for p in model.parameters())
    assert row['flops'] == benchmark.count_flops(model, torch.randn(1, 3, 112, 112))
