"""visionattn.analysis measurements: FLOP counting, the isolated benchmark row, time-outs, backends and tables."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from visionattn.analysis.model_benchmark import Spec, backend_matters, format_table, run_isolated
from visionattn.analysis.profiling import count_flops, peak_mib
from visionattn.cli import benchmark
from visionattn.ops.dispatch import BACKENDS

NEEDS_REFERENCE = pytest.mark.skipif(
    'reference' not in BACKENDS,
    reason="needs the 'reference' attention backend (bra_attention's gather formulation), added on branch 'bra'")


def test_flops_of_convolutions_and_matmuls_are_two_per_multiply_add() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 5 * 5, 10))
    macs = 8 * 3 * 9 * 5 * 5 + 8 * 5 * 5 * 10
    assert count_flops(model, torch.randn(1, 3, 5, 5)) == 2 * macs


def test_flops_of_cpu_sdpa_are_counted() -> None:
    class Attention(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(q, q, q)

    batch, heads, tokens, dim = 2, 3, 16, 8
    flops = count_flops(Attention(), torch.randn(batch, heads, tokens, dim))
    assert flops == 4 * batch * heads * tokens * tokens * dim


def test_flops_of_neighborhood_attention_count_the_window() -> None:
    from visionattn.ops import na2d

    class Neighborhood(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return na2d(q, q, q, kernel_size=3, dilation=2, backend='torch')

    batch, height, width, heads, dim = 1, 8, 7, 2, 4
    flops = count_flops(Neighborhood(), torch.randn(batch, height, width, heads, dim))
    assert flops == 4 * batch * height * width * heads * 9 * dim


def test_flops_of_routing_attention_count_the_routed_keys() -> None:
    from visionattn.ops import bi_level_routing_attention

    class Routing(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return bi_level_routing_attention(q, q, q, region_grid=4, topk=3, backend='torch')

    batch, side, heads, dim = 2, 8, 2, 4
    flops = count_flops(Routing(), torch.randn(batch, side, side, heads, dim))
    regions, keys = 16, 3 * (side // 4) ** 2
    routing = 2 * batch * regions * regions * heads * dim  # region affinity: (regions x C) @ (C x regions)
    attention = 4 * batch * side * side * heads * keys * dim
    assert flops == routing + attention


def test_an_operator_without_formula_stops_the_count() -> None:
    @torch.library.custom_op('visionattn_test::opaque_matmul', mutates_args=())
    def opaque_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    class Opaque(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return opaque_matmul(x, x)

    with pytest.raises(RuntimeError, match='visionattn_test.opaque_matmul'):
        count_flops(Opaque(), torch.randn(4, 4))


def test_peak_memory_counts_the_tensors_alive_together() -> None:
    def two_mib_then_one() -> None:
        a = torch.ones(2 ** 19)  # 2 MiB
        b = torch.ones(2 ** 18)  # 1 MiB, alive with a
        del a, b
        torch.ones(2 ** 18)

    assert peak_mib(two_mib_then_one, torch.device('cpu')) == pytest.approx(3.0, abs=0.01)


@pytest.mark.slow
def test_isolated_measurement_of_a_small_model() -> None:
    spec = Spec(model='resnet18_triplet', img_size=64, batch=2, train_batch=2, flops=True, repeat=2,
                budget_s=0.5, threads=1)
    row = run_isolated(spec, timeout_s=300)
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
    assert '| resnet18_triplet | auto | 64x64 |' in format_table([row])


def test_a_row_that_runs_out_of_time_is_reported_not_raised() -> None:
    row = run_isolated(Spec(model='resnet18_cbam'), timeout_s=0.5)
    assert row['error'] == 'timed out after 0.5 s'
    assert row['spec']['model'] == 'resnet18_cbam'
    assert 'timed out' in format_table([row])


def test_a_failing_row_carries_the_error() -> None:
    row = run_isolated(Spec(model='no_such_model', modes=('infer',)), timeout_s=300)
    assert 'unknown model' in row['error']


def test_parameters_and_flops_only_at_any_size() -> None:
    spec = Spec(model='resnet18_cbam', img_size=112, modes=(), flops=True)
    row = run_isolated(spec, timeout_s=300)
    assert 'error' not in row and 'infer' not in row and 'train' not in row
    assert row['input_size'] == [3, 112, 112]
    import timm
    model = timm.create_model('resnet18_cbam').eval()
    assert row['params'] == sum(p.numel() for p in model.parameters())
    assert row['flops'] == count_flops(model, torch.randn(1, 3, 112, 112))


def test_other_backends_are_measured_only_where_the_model_calls_the_projects_operators(capsys) -> None:
    assert backend_matters('biformer_tiny') and backend_matters('nat_mini')
    assert not backend_matters('resnet18_cbam')
    args = benchmark.parse_args(['--models', 'resnet18_cbam', 'biformer_tiny', '--img-size', '0', '320'])
    args.backend = ['auto', 'torch']  # any backend name other than 'auto'
    specs = benchmark.specs_from_args(args)
    assert [(s.model, s.img_size, s.backend) for s in specs] == [
        ('resnet18_cbam', None, 'auto'), ('resnet18_cbam', 320, 'auto'),
        ('biformer_tiny', None, 'auto'), ('biformer_tiny', None, 'torch'),
        ('biformer_tiny', 320, 'auto'), ('biformer_tiny', 320, 'torch')]
    assert 'resnet18_cbam: calls no visionattn attention operator' in capsys.readouterr().err


@NEEDS_REFERENCE
def test_the_old_impl_option_names_the_backends(capsys) -> None:
    args = benchmark.parse_args(['--models', 'biformer_tiny', '--impl', 'ours', 'upstream'])
    assert args.backend == ['auto', 'reference']
    assert '--impl is deprecated, use --backend auto reference' in capsys.readouterr().err


@NEEDS_REFERENCE
def test_the_reference_backend_runs_inside_biformer() -> None:
    import timm

    from visionattn.ops import use_backend
    model = timm.create_model('biformer_tiny', depths=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), head_dim=16,
                              n_win=4, topks=(2, 3, 4, -2), num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)
        with use_backend('reference'):
            reference = model(x)
    torch.testing.assert_close(reference, ours, rtol=1e-4, atol=1e-5)
