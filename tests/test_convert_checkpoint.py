"""convert_checkpoint (tools/convert_checkpoint.py): official checkpoint -> safetensors that timm loads, for any registered family."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch
from safetensors import safe_open

import visionattn
from conftest import REPO_ROOT, load_upstream_fixture
from visionattn.cli.convert_checkpoint import main
from visionattn.convert import convert_checkpoint as convert
from visionattn.errors import CheckpointError, ConfigError, UnknownNameError


def _entry_point_kwargs(upstream: dict) -> dict:
    keys = ('embed_dim', 'depths', 'num_heads', 'mlp_ratio', 'kernel_size', 'num_classes', 'dilations')
    return {k: upstream[k] for k in keys if k in upstream}


@pytest.mark.parametrize('mode', ['upstream_kwargs', 'model'])
def test_converted_file_loads_in_timm_and_reproduces_the_official_logits(tmp_path, mode):
    fx = load_upstream_fixture('dinat_small_dims')
    upstream = json.loads(fx['upstream_kwargs'])
    source = tmp_path / 'dinat_official.pth'
    torch.save({'model': fx['state_dict']}, source)  # wrapped, as training checkpoints are
    output = tmp_path / 'dinat.safetensors'
    if mode == 'model':
        convert('dinat', source, output, model='dinat_mini', model_kwargs=_entry_point_kwargs(upstream))
    else:
        convert('dinat', source, output, upstream_kwargs=upstream)
    with safe_open(str(output), 'pt') as f:
        assert f.metadata()['family'] == 'dinat'
        assert any(k.startswith('stages.1.downsample.') for k in f.keys())

    # num_classes in the overlay: the file's head has the fixture's 10 classes (timm drops a head of another size)
    model = timm.create_model('dinat_mini', pretrained=True, **_entry_point_kwargs(upstream),
                              pretrained_cfg_overlay=dict(file=str(output), num_classes=10)).eval()
    with torch.no_grad():
        logits = model(fx['input'][:1])
    assert ((logits - fx['logits'][:1]).abs().max() / fx['logits'][:1].abs().max()) < 1e-4


def test_detection_checkpoint_becomes_a_backbone_file_for_features_only(tmp_path):
    fx = load_upstream_fixture('nat_small_dims')
    upstream = json.loads(fx['upstream_kwargs'])
    state = {f'backbone.{k}': v for k, v in fx['state_dict'].items() if not k.startswith(('norm.', 'head.'))}
    state |= {f'backbone.norm{i}.{p}': torch.full((d,), 0.5) for i, d in enumerate((32, 64, 128, 256))
              for p in ('weight', 'bias')}
    state['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(81, 1024)
    source = tmp_path / 'mask_rcnn.pth'
    torch.save({'meta': {'epoch': 36}, 'state_dict': state}, source)
    backbone_kwargs = {k: v for k, v in upstream.items() if k != 'num_classes'} | dict(out_indices=[0, 1, 2, 3])
    tensors = convert('nat', source, tmp_path / 'backbone.safetensors', upstream_kwargs=backbone_kwargs)
    assert {k.split('.')[0] for k in tensors} == {'patch_embed', 'stages', 'feature_norms'}
    model = timm.create_model('nat_mini', features_only=True, feature_norms=True, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / 'backbone.safetensors')),
                              **_entry_point_kwargs(upstream))
    torch.testing.assert_close(model.model.feature_norms[3].bias, torch.full((256,), 0.5))


def test_mismatches_stop_with_the_keys_and_what_to_do(tmp_path):
    fx = load_upstream_fixture('nat_small_dims')
    source = tmp_path / 'nat.pth'
    torch.save(fx['state_dict'], source)
    with pytest.raises(CheckpointError, match=r'nat.pth does not fit nat_mini: .*(?s:.*)upstream_kwargs'):
        convert('nat', source, tmp_path / 'x.safetensors', model='nat_mini')  # the real nat_mini is larger
    kwargs = dict(embed_dim=32, depths=[1, 1, 2, 2], num_heads=[1, 2, 4, 8], num_classes=10)
    with pytest.raises(CheckpointError, match=r'\d+ of the \d+ model tensors are missing \(stages.3.blocks.1.*'
                                              r'looks like a state dict'):
        convert('nat', source, tmp_path / 'x.safetensors', model='nat_mini', model_kwargs=kwargs)
    with pytest.raises(UnknownNameError, match="known families: \\[.*'nat'"):
        convert('natt', source, tmp_path / 'x.safetensors', model='nat_mini')
    with pytest.raises(ConfigError, match='exactly one of model'):
        convert('nat', source, tmp_path / 'x.safetensors')
    with pytest.raises(ConfigError, match='.safetensors'):
        convert('nat', source, tmp_path / 'x.pth', model='nat_mini')
    assert 'nat' in visionattn.families() and 'dinat' in visionattn.families()


def test_command_line(tmp_path):
    fx = load_upstream_fixture('nat_small_dims')
    source = tmp_path / 'nat.pth'
    torch.save(fx['state_dict'], source)
    output = tmp_path / 'nat.safetensors'
    proc = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(source), str(output), '--family', 'nat',
                           '--upstream-kwargs', fx['upstream_kwargs']], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'wrote {output}' in proc.stdout and output.is_file()
    proc = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(source), str(output), '--family', 'nat',
                           '--upstream-kwargs', '[1, 2]'], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith('error: --upstream-kwargs: give a JSON object')
    assert 'Traceback' not in proc.stderr
    with pytest.raises(ConfigError, match='JSON object'):
        main([str(source), str(output), '--family', 'nat', '--upstream-kwargs', '[1, 2]', '--debug'])


HUB_CASES = {  # family: (fixture, timm entry point, its kwargs for the fixture's architecture)
    'biformer': ('biformer_small_dims', 'biformer_tiny',
                 dict(embed_dims=[32, 64, 96, 128], depths=[1, 1, 2, 1], n_win=7, num_classes=10)),
    'nat': ('nat_small_dims', 'nat_mini',
            dict(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], mlp_ratio=3, num_classes=10)),
    'dinat': ('dinat_small_dims', 'dinat_mini',
              dict(embed_dim=32, depths=[1, 2, 2, 1], num_heads=[1, 2, 4, 8], mlp_ratio=3, num_classes=10,
                   dilations=[[8], [1, 4], [1, 2], [1]])),
}


@pytest.mark.parametrize('family', sorted(HUB_CASES))
def test_hub_dir_loads_through_timm_local_dir_with_no_extra_arguments(tmp_path, family):
    fixture, entry_point, model_kwargs = HUB_CASES[family]
    fx = load_upstream_fixture(fixture)
    source = tmp_path / 'official.pth'
    torch.save({'model': fx['state_dict']}, source)
    hub_dir = tmp_path / 'hub'
    main([str(source), '--family', family, '--model', entry_point, '--model-kwargs', json.dumps(model_kwargs),
          '--hub-dir', str(hub_dir)])
    assert sorted(p.name for p in hub_dir.iterdir()) == ['config.json', 'model.safetensors']
    config = json.loads((hub_dir / 'config.json').read_text())
    assert config['architecture'] == entry_point and config['num_classes'] == 10
    assert config['pretrained_cfg']['mean'] and config['pretrained_cfg']['first_conv']  # timm's pretrained config
    model = timm.create_model(f'local-dir:{hub_dir}', pretrained=True).eval()
    with torch.no_grad():
        logits = model(fx['input'][:1])
    assert ((logits - fx['logits'][:1]).abs().max() / fx['logits'][:1].abs().max()) < 1e-4


def test_hub_dir_needs_a_timm_architecture(tmp_path):
    fx = load_upstream_fixture('nat_small_dims')
    source = tmp_path / 'nat.pth'
    torch.save(fx['state_dict'], source)
    with pytest.raises(ConfigError, match='timm entry point'):
        convert('nat', source, hub_dir=tmp_path / 'hub', upstream_kwargs=json.loads(fx['upstream_kwargs']))
    with pytest.raises(ConfigError, match='hub folder'):
        convert('nat', source, model='nat_mini')


def test_hub_dir_of_isotropic_and_cnn_attention_families(tmp_path):
    """The families without upstream fixtures: official layouts restated by their tests (isotropic DiNAT,
    the Triplet ResNet's released layout) -> hub folder -> timm.create_model('local-dir:...') computes what
    the official model (from_official / the reference module) computes."""
    from test_cnn_attention import TRIPLET_LAYOUTS, RefTriplet, _official_resnet, _randomize
    from test_nat import upstream_isotropic_layout

    torch.manual_seed(0)
    iso_kwargs = dict(embed_dim=32, num_heads=2, depth=2, kernel_size=3, num_classes=5)
    official = {k: torch.randn(shape) * 0.1 for k, shape in
                upstream_isotropic_layout(embed_dim=32, num_heads=2, depth=2, kernel=3, num_classes=5).items()}
    reference = visionattn.from_official('dinat_isotropic', iso_kwargs, official).eval()
    triplet = _randomize(_official_resnet(18, 'pcam', lambda c: RefTriplet(7, *TRIPLET_LAYOUTS['pcam']))).eval()
    cases = [('dinat_isotropic', official, 'dinat_isotropic_small',
              dict(embed_dim=32, num_heads=2, depth=2, kernel_size=3, dilations=[1, 2], num_classes=5), reference),
             ('triplet_resnet', {'state_dict': triplet.state_dict()}, 'resnet18_triplet', {}, triplet)]
    x = torch.randn(1, 3, 64, 64)
    for family, checkpoint, entry_point, model_kwargs, expected in cases:
        source, hub_dir = tmp_path / f'{family}.pth', tmp_path / family
        torch.save(checkpoint, source)
        main([str(source), '--family', family, '--model', entry_point, '--model-kwargs', json.dumps(model_kwargs),
              '--hub-dir', str(hub_dir)])
        model = timm.create_model(f'local-dir:{hub_dir}', pretrained=True).eval()
        assert model.pretrained_cfg['architecture'] == entry_point
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected(x), rtol=1e-4, atol=1e-4)
