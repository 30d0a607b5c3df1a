"""Exporting the project's models (issue 20): no cache keeps what a tracer made, and visionattn.export's
helpers report dynamic axes and differences from PyTorch.

The models are tiny (one block per stage, 16 channels) so that an ONNX export takes a second or two; the
table of every registered model at full size is ``python tools/export.py check`` (benchmarks/onnx.md).
"""
from __future__ import annotations

import pytest
import timm
import torch

import visionattn  # noqa: F401  (registers the project's models)
from visionattn.errors import ConfigError
from visionattn.export import example_input, export_onnx, export_program, onnx_max_error, within_tolerance
from visionattn.ops import na, routing

pytest.importorskip('onnxscript')
pytest.importorskip('onnxruntime')


def tiny_dinat() -> torch.nn.Module:
    """DiNAT with a dilated layer in the first stages (kernel 3, dilations 2 then 1)."""
    return timm.create_model('dinat_mini', embed_dim=16, depths=(2, 1, 1, 1), num_heads=(1, 1, 2, 2), kernel_size=3,
                             dilations=((1, 2), (1,), (1,), (1,)), num_classes=3).eval()


def tiny_isotropic_nat() -> torch.nn.Module:
    """Isotropic NAT (patch size 16, kernel 7): inputs padded to a multiple of 16, maps below the window padded."""
    return timm.create_model('nat_isotropic_small', depth=1, embed_dim=32, num_heads=2, num_classes=3).eval()


def tiny_biformer() -> torch.nn.Module:
    return timm.create_model('biformer_tiny', depths=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), head_dim=16,
                             n_win=2, topks=(1, 2, 2, -2), num_classes=3).eval()


def shape_caches() -> list[na._ShapeCache]:
    """Every cache of the attention operators that keeps tensors across calls."""
    return [value for module in (na, routing) for value in vars(module).values() if isinstance(value, na._ShapeCache)]


def test_export_before_any_eager_call_then_eager_then_export_again(tmp_path):
    """Issue 20: a NAT-family model exported before it ever ran returned the exporter's FakeTensor on its next
    eager call, and a second export in the process failed; BiFormer did not export at all."""
    for name, model in (('dinat', tiny_dinat()), ('biformer', tiny_biformer())):
        for cache in shape_caches():
            cache.clear()  # as in a fresh process
        x = example_input((3, 96, 96))  # DiNAT's maps 24 to 3: no layer pads
        first = export_onnx(model, x, tmp_path / f'{name}_first.onnx', dynamic=(), optimize=False)
        assert all(len(cache) == 0 for cache in shape_caches()), name  # nothing cached under the exporter
        with torch.no_grad():
            eager = model(x)
        assert type(eager) is torch.Tensor, name
        assert all(type(t) is torch.Tensor for cache in shape_caches() for value in cache._items.values()
                   for t in (value if isinstance(value, tuple) else (value,)) if isinstance(t, torch.Tensor))
        second = export_onnx(model, x, tmp_path / f'{name}_second.onnx', dynamic=(), optimize=False)
        for exported in (first, second):
            error, scale = onnx_max_error(exported.path, model, x)
            assert within_tolerance(error, scale), (name, error, scale)
        with torch.no_grad():
            torch.testing.assert_close(model(x), eager, rtol=0, atol=0)


@pytest.mark.parametrize('make_model, size, other_size', [
    # -(-n // d) as a ceiling made the dynamic graph wrong at other sizes: onnxruntime's division truncates
    pytest.param(tiny_dinat, (96, 96), (128, 96), marks=pytest.mark.slow),
    (tiny_biformer, (64, 64), (80, 48)),  # stage maps 20x12 and 5x3 are padded to a multiple of n_win, 16x16 not
    # the layer's export-time pad was written size + max(window - size, 0): torch.export called its guards on the
    # padded-to-16 size inconsistent and the exporter fell back to a graph holding the custom op (no ONNX function)
    pytest.param(tiny_isotropic_nat, (128, 128), (96, 120), marks=pytest.mark.slow),  # 8x8, then 6x8 tokens
])
def test_dynamic_axes_are_reported_and_serve_another_size(make_model, size, other_size, tmp_path):
    model = make_model()
    exported = export_onnx(model, example_input((3, *size)), tmp_path / 'model.onnx', optimize=False)
    assert set(exported.dynamic_axes) == {'batch', 'height', 'width'}
    error, scale = onnx_max_error(exported.path, model, example_input((3, *other_size), batch=1, seed=1))
    assert within_tolerance(error, scale), (error, scale)


def test_static_program_takes_the_example_shape():
    model, x = tiny_dinat(), example_input((3, 64, 64))
    program, exported = export_program(model, x, dynamic=())
    assert exported.dynamic_axes == ()
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


def test_bad_requests_say_what_to_do(tmp_path):
    model = tiny_dinat()
    with pytest.raises(ConfigError, match='unknown dynamic axes'):
        export_program(model, example_input((3, 64, 64)), dynamic=('depth',))
    with pytest.raises(ConfigError, match='eval mode'):
        export_program(model.train(), example_input((3, 64, 64)))
    assert not within_tolerance(float('nan'), 1.0)


@pytest.mark.parametrize('argv, message', [
    (['onnx', 'no_such_model', '--out', 'x.onnx'], "unknown timm model 'no_such_model'"),
    (['program', 'dinat_mini', '--out', 'x.pt2', '--model-kwargs', '[1]'], 'give a JSON object'),
    (['program', 'dinat_mini', '--out', 'x.pt2', '--checkpoint', 'missing.pth'], 'does not exist'),
    (['check', '--models', 'resnet18_cbam', '--out', 'no_table.md', '--resume'], 'run without --resume'),
])
def test_program_errors_are_one_line(argv, message, capsys):
    from visionattn.cli.export import main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_check_resume_keeps_earlier_rows_and_checks_the_rest(tmp_path, monkeypatch):
    """A stopped ``export.py check`` loses nothing: ``--resume`` keeps the rows it wrote (with the commit they
    were checked at) and checks only the models without a row."""
    import json

    from visionattn.analysis import export_check
    from visionattn.cli.export import main
    earlier = dict(model='resnet18_cbam', params=11_780_000, sizes=[[224, 224], [256, 192]], export_s=[11.4],
                   max_error=[9.7e-8, 9.7e-8], output_scale=[0.27, 0.27], dynamic_axes=['batch', 'height', 'width'],
                   ok=True, wall_s=24.8)
    table = tmp_path / 'onnx.md'
    table.with_suffix('.json').write_text(json.dumps(dict(header='Date: then; commit abc1234\n', rows=[earlier])))
    checked = []

    def run_isolated(name, timeout_s, threads=None):
        checked.append(name)
        return dict(earlier, model=name, max_error=[1e-7, 1e-7])
    monkeypatch.setattr(export_check, 'run_isolated', run_isolated)
    main(['check', '--models', 'resnet18_cbam', 'resnet18_ela', '--out', str(table), '--resume'])
    assert checked == ['resnet18_ela']
    rows = {row['model']: row for row in json.loads(table.with_suffix('.json').read_text())['rows']}
    assert rows['resnet18_cbam'] == dict(earlier, commit='abc1234')
    assert rows['resnet18_ela']['commit'] not in ('abc1234', '')
    text = table.read_text()
    assert 'Kept from earlier runs (--resume): 1 rows, checked at commit(s) abc1234' in text
    assert '| resnet18_cbam | 11.78 | yes |' in text and '| abc1234 |' in text
