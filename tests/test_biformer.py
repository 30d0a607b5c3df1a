"""BiFormer: official-checkpoint conversion, upstream reference logits, padding modes, timm and OpenMMLab use."""
from __future__ import annotations

import glob
import json
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import timm
import torch
from torch.nn import functional as F

import visionattn
from conftest import REPO_ROOT, load_upstream_fixture
from visionattn import from_official
from visionattn.errors import WeightsUnavailableError
from visionattn.layers import BiLevelRoutingAttention
from visionattn.models import biformer as biformer_module
from visionattn.models.biformer import checkpoint_filter_fn

# upstream's biformer_{tiny,small,base}() entry points (models/biformer.py)
_RELEASED = dict(
    mlp_ratios=[3, 3, 3, 3], n_win=7, kv_downsample_mode='identity', kv_per_wins=[-1, -1, -1, -1],
    topks=[1, 4, 16, -2], side_dwconv=5, before_attn_dwconv=3, layer_scale_init_value=-1, head_dim=32,
    param_routing=False, diff_routing=False, soft_routing=False, pre_norm=True, pe=None)
RELEASED_KWARGS = {
    'tiny': dict(_RELEASED, depth=[2, 2, 8, 2], embed_dim=[64, 128, 256, 512], qk_dims=[64, 128, 256, 512]),
    'small': dict(_RELEASED, depth=[4, 4, 18, 4], embed_dim=[64, 128, 256, 512], qk_dims=[64, 128, 256, 512]),
    'base': dict(_RELEASED, depth=[4, 4, 18, 4], embed_dim=[96, 192, 384, 768], qk_dims=[96, 192, 384, 768]),
}
# timm kwargs that give the architecture of the fixtures' upstream_kwargs
FIXTURE_ARCH = dict(embed_dims=(32, 64, 96, 128))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def shapes(state_dict: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def fixture_timm_kwargs(fx: dict) -> dict:
    upstream = json.loads(fx['upstream_kwargs'])
    return dict(FIXTURE_ARCH, depths=tuple(upstream['depth']), n_win=upstream['n_win'],
                num_classes=upstream['num_classes'])


def small_model(**kwargs) -> torch.nn.Module:
    return timm.create_model('biformer_tiny', depths=(1, 1, 2, 1), **FIXTURE_ARCH, **kwargs)


def dense_checkpoint(fx: dict) -> dict:
    """The fixture's weights as upstream's mmseg code saves them: ``backbone.*`` with extra_norms, a head."""
    state = {f'backbone.{k}': v for k, v in fx['state_dict'].items() if not k.startswith(('norm.', 'head.'))}
    for i, dim in enumerate(FIXTURE_ARCH['embed_dims']):
        state[f'backbone.extra_norms.{i}.weight'] = torch.rand(dim) + 0.5
        state[f'backbone.extra_norms.{i}.bias'] = torch.randn(dim)
    state['decode_head.conv_seg.weight'] = torch.randn(150, 512, 1, 1)
    return {'meta': {'mmseg_version': '0.30.0'}, 'state_dict': state}


# ---------------------------------------------------------------------------------------------
# official checkpoints and upstream reference outputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('variant', ['tiny', 'small', 'base'])
def test_official_checkpoints_convert_with_no_missing_or_unexpected_keys(variant, upstream_manifests):
    manifest = upstream_manifests[f'biformer_{variant}']
    official = {k: torch.empty(shape, device='meta') for k, shape in manifest.items()}
    with torch.device('meta'):
        from_official('biformer', RELEASED_KWARGS[variant], {'model': official})  # strict: raises on any mismatch
        ours = timm.create_model(f'biformer_{variant}')
    assert shapes(checkpoint_filter_fn({'model': official}, ours)) == shapes(ours.state_dict())


@pytest.mark.parametrize('variant, millions', [('tiny', 13.1), ('small', 25.5), ('base', 56.8)])
def test_parameter_counts_match_upstream(variant, millions):
    with torch.device('meta'):
        model = timm.create_model(f'biformer_{variant}')
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions


@pytest.mark.parametrize('name', ['biformer_small_dims', 'biformer_autopad'])
def test_upstream_logits_on_the_pytorch_path(name):
    fx = load_upstream_fixture(name)
    model = from_official(fx['family'], json.loads(fx['upstream_kwargs']), fx['state_dict'])
    with torch.no_grad(), visionattn.use_backend('torch'):
        assert rel_err(model(fx['input']), fx['logits']) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('name', ['biformer_small_dims', 'biformer_autopad'])
def test_upstream_logits_on_the_interpreted_triton_path(name):
    fx = load_upstream_fixture(name)
    model = from_official(fx['family'], json.loads(fx['upstream_kwargs']), fx['state_dict'])
    with torch.no_grad(), visionattn.use_backend('triton'):  # one image: eval-mode logits are per image
        assert rel_err(model(fx['input'][:1]), fx['logits'][:1]) < 1e-4


def test_upstream_file_loads_through_timm_with_in_chans_adaptation(tmp_path):
    fx = load_upstream_fixture('biformer_small_dims')
    path = tmp_path / 'biformer_official.pth'
    torch.save({'model': fx['state_dict']}, path)  # wrapped, as upstream releases them
    # num_classes in the overlay: timm keeps a pretrained head only when it has the model's class count
    kwargs = dict(fixture_timm_kwargs(fx), pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=10))
    model = timm.create_model('biformer_tiny', **kwargs).eval()
    with torch.no_grad():
        assert rel_err(model(fx['input']), fx['logits']) < 1e-4
    gray = timm.create_model('biformer_tiny', in_chans=1, **kwargs)
    rgb_filters = fx['state_dict']['downsample_layers.0.0.weight']
    torch.testing.assert_close(gray.stem[0].weight, rgb_filters.sum(1, keepdim=True))  # timm's rule for 1 channel


def test_official_download_is_cached_per_variant_and_unwrapped(tmp_path, monkeypatch):
    fx = load_upstream_fixture('biformer_small_dims')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))  # torch's hub cache, where timm keeps its downloads
    requested = []

    def download(url, dst, progress):
        requested.append((url, Path(dst).name))
        torch.save({'model': fx['state_dict'], 'model_ema': {}}, dst)  # 'model' is what upstream loads

    monkeypatch.setattr(biformer_module, 'download_url_to_file', download)
    for _ in range(2):  # the second model comes from the cache
        model = timm.create_model('biformer_tiny', pretrained=True, pretrained_cfg_overlay=dict(num_classes=10),
                                  **fixture_timm_kwargs(fx)).eval()
    url = timm.get_pretrained_cfg('biformer_tiny').url
    assert requested == [(url, 'biformer_tiny_in1k.pth')]  # not the URL's last part ('content'), shared by all
    with torch.no_grad():
        assert rel_err(model(fx['input']), fx['logits']) < 1e-4


def test_failed_official_download_says_where_to_get_the_file(tmp_path, monkeypatch):
    def offline(url, dst, progress):
        raise urllib.error.URLError('network unreachable')

    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setattr(biformer_module, 'download_url_to_file', offline)
    with pytest.raises(WeightsUnavailableError, match=r'(?s)biformer_small_in1k\.pth.*1drv\.ms.*pretrained_cfg_overlay'):
        timm.create_model('biformer_small', pretrained=True)


def test_unsupported_upstream_options_are_refused_by_name():
    kwargs = dict(RELEASED_KWARGS['tiny'])
    with pytest.raises(NotImplementedError, match=r"diff_routing.*diff_routing=False"):
        from_official('biformer', dict(kwargs, diff_routing=True))
    with pytest.raises(TypeError, match=r"\['norm_eval'\].*biformer_mm"):
        from_official('biformer', dict(kwargs, norm_eval=True))
    with pytest.raises(ValueError, match=r'topk=16 must be between 1 and the number of regions n_win\*\*2=9'):
        from_official('biformer', dict(kwargs, n_win=3))


# ---------------------------------------------------------------------------------------------
# detection / segmentation checkpoints (per-stage output norms)
# ---------------------------------------------------------------------------------------------
def test_upstream_dense_checkpoint_loads_through_features_only(tmp_path):
    fx = load_upstream_fixture('biformer_autopad')
    checkpoint = dense_checkpoint(fx)
    path = tmp_path / 'upernet_biformer.pth'
    torch.save(checkpoint, path)
    features = timm.create_model(
        'biformer_tiny', features_only=True, feature_norms=True, pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)), **fixture_timm_kwargs(fx)).eval()
    # the same backbone as upstream's BiFormer_mm, built from its config dict
    upstream_kwargs = dict(json.loads(fx['upstream_kwargs']), type='BiFormer_mm', norm_eval=True)
    reference = from_official('biformer_mm', upstream_kwargs, checkpoint)
    assert not any(k.startswith(('norm.', 'head.')) for k in reference.state_dict())
    with torch.no_grad():
        maps = features(fx['input'])
        expected = reference.forward_intermediates(fx['input'], intermediates_only=True)
        raw = from_official('biformer', json.loads(fx['upstream_kwargs']), fx['state_dict']).forward_intermediates(
            fx['input'], intermediates_only=True)
    assert [m.shape[1:] for m in maps] == [(32, 50, 66), (64, 25, 33), (96, 13, 17), (128, 7, 9)]
    for got, want, stage_out, i in zip(maps, expected, raw, range(4)):
        torch.testing.assert_close(got, want)
        weight, bias = (checkpoint['state_dict'][f'backbone.extra_norms.{i}.{p}'] for p in ('weight', 'bias'))
        manual = F.layer_norm(stage_out.permute(0, 2, 3, 1), (stage_out.shape[1],), weight, bias, 1e-6)
        torch.testing.assert_close(got, manual.permute(0, 3, 1, 2), rtol=1e-4, atol=1e-4)


def test_dense_checkpoint_into_a_model_without_feature_norms_says_what_to_do():
    fx = load_upstream_fixture('biformer_autopad')
    with pytest.raises(ValueError, match='create the model with feature_norms=True'):
        checkpoint_filter_fn(dense_checkpoint(fx), small_model())


def test_convert_checkpoint_tool_writes_a_backbone_file_timm_loads(tmp_path):
    tool = REPO_ROOT / 'tools' / 'convert_checkpoint.py'
    if not tool.is_file():
        pytest.skip('tools/convert_checkpoint.py is not on this branch yet')
    fx = load_upstream_fixture('biformer_autopad')
    source, output = tmp_path / 'upernet.pth', tmp_path / 'backbone.safetensors'
    checkpoint = dense_checkpoint(fx)
    torch.save(checkpoint, source)
    upstream_kwargs = dict(json.loads(fx['upstream_kwargs']), type='BiFormer_mm')
    subprocess.run([sys.executable, str(tool), '--family', 'biformer_mm', '--upstream-kwargs',
                    json.dumps(upstream_kwargs), str(source), str(output)], check=True, cwd=REPO_ROOT)
    features = timm.create_model('biformer_tiny', features_only=True, feature_norms=True, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(output)), **fixture_timm_kwargs(fx)).eval()
    reference = from_official('biformer_mm', upstream_kwargs, checkpoint)
    with torch.no_grad():
        for got, want in zip(features(fx['input']), reference.forward_intermediates(fx['input'],
                                                                                     intermediates_only=True)):
            torch.testing.assert_close(got, want)


# ---------------------------------------------------------------------------------------------
# padding modes
# ---------------------------------------------------------------------------------------------
def masked_reference(attn: BiLevelRoutingAttention, x: torch.Tensor) -> torch.Tensor:
    """Masked routing attention written out region by region: padded tokens in no mean and no key."""
    batch, height, width, dim = x.shape
    n, heads, qk = attn.n_win, attn.num_heads, attn.qk_dim
    padded = F.pad(x, (0, 0, 0, -width % n, 0, -height % n))
    ph, pw = padded.shape[1:3]
    rh, rw = ph // n, pw // n
    q, k, v = attn.qkv(padded).split([qk, qk, dim], dim=-1)
    real = torch.zeros(ph, pw, dtype=torch.bool)
    real[:height, :width] = True
    out = torch.zeros(batch, ph, pw, dim)
    cells = [(slice(i * rh, (i + 1) * rh), slice(j * rw, (j + 1) * rw)) for i in range(n) for j in range(n)]
    for b in range(batch):
        q_means = [q[b][cell][real[cell]].mean(0) for cell in cells]  # every region has real tokens here
        k_means = [k[b][cell][real[cell]].mean(0) for cell in cells]
        for r, cell in enumerate(cells):
            routed = torch.topk(torch.stack([(q_means[r] * attn.scale) @ km for km in k_means]), attn.topk).indices
            keys = torch.cat([k[b][cells[s]][real[cells[s]]] for s in routed.tolist()])
            values = torch.cat([v[b][cells[s]][real[cells[s]]] for s in routed.tolist()])
            queries = q[b][cell].reshape(-1, qk)
            head_out = []
            for h in range(heads):
                qs, ks = slice(h * qk // heads, (h + 1) * qk // heads), slice(h * dim // heads, (h + 1) * dim // heads)
                probs = torch.softmax(queries[:, qs] @ keys[:, qs].T * attn.scale, dim=-1)
                head_out.append(probs @ values[:, ks])
            out[b][cell] = torch.cat(head_out, -1).reshape(rh, rw, dim)
    out = out[:, :height, :width]
    lepe = attn.lepe(v[:, :height, :width].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return attn.proj(out + lepe)


@pytest.mark.parametrize('backend', ['torch', 'triton'])
def test_masked_padding_leaves_padded_tokens_out_of_routing_attention_and_lepe(backend):
    torch.manual_seed(0)
    attn = BiLevelRoutingAttention(32, num_heads=2, n_win=3, topk=2, side_dwconv=3, pad_mode='masked')
    torch.nn.init.normal_(attn.qkv.bias, std=1.0)  # padded tokens' q/k/v are this bias: make it matter
    x = torch.randn(2, 7, 10, 32)  # padded to 9x12: regions of 3x4 tokens, the last row and column partial
    with torch.no_grad(), visionattn.use_backend(backend):
        torch.testing.assert_close(attn(x), masked_reference(attn, x), rtol=1e-5, atol=1e-5)
        upstream = BiLevelRoutingAttention(32, num_heads=2, n_win=3, topk=2, side_dwconv=3, pad_mode='upstream')
        upstream.load_state_dict(attn.state_dict())
        assert (upstream(x) - attn(x)).abs().max() > 1e-2  # the padded tokens do matter upstream
        divisible = torch.randn(2, 9, 12, 32)
        torch.testing.assert_close(upstream(divisible), attn(divisible))


@pytest.mark.parametrize('pad_mode', ['upstream', 'masked'])
def test_any_input_size_features_only_and_forward_intermediates(pad_mode):
    torch.manual_seed(0)
    model = small_model(n_win=8, pad_mode=pad_mode).eval()
    torch.manual_seed(0)  # the same initial weights
    features = small_model(n_win=8, pad_mode=pad_mode, features_only=True, out_indices=(1, 3)).eval()
    assert [(i['num_chs'], i['reduction']) for i in features.feature_info.get_dicts()] == [(64, 8), (128, 32)]
    x = torch.randn(1, 3, 75, 101)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x, indices=(1, 3))
        picked = features(x)
        logits = model(x)
    assert [tuple(m.shape) for m in maps] == [(1, 64, 10, 13), (1, 128, 3, 4)]
    for got, want in zip(picked, maps):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(model.forward_head(final), logits)


def test_drop_path_and_gradient_checkpointing():
    model = small_model(drop_path_rate=0.2)
    rates = [b.drop_path1.drop_prob if hasattr(b.drop_path1, 'drop_prob') else 0.0
             for stage in model.stages for b in stage.blocks]
    assert rates == pytest.approx([0.0, 0.2 / 4, 0.4 / 4, 0.6 / 4, 0.2])
    model = small_model(num_classes=3).eval()  # eval: no drop path, BatchNorm statistics fixed
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    model(x).square().sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()
    for got, want in zip((p.grad for p in model.parameters()), plain):
        torch.testing.assert_close(got, want)


def test_n_win_and_classifier_are_settable():
    model = timm.create_model('biformer_tiny', n_win=16, num_classes=5, depths=(1, 1, 1, 1))
    assert model.stages[0].blocks[0].attn.n_win == 16
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        timm.create_model('biformer_tiny', pad_mode='zeros')


# ---------------------------------------------------------------------------------------------
# OpenMMLab
# ---------------------------------------------------------------------------------------------
def test_openmmlab_backbone_with_feature_norms_and_frozen_stages():
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    backbone = MODELS.build(dict(
        type='visionattn.TimmBackbone', model_name='biformer_tiny', frozen_stages=1,
        model_kwargs=dict(n_win=4, feature_norms=True, depths=(1, 1, 1, 1), embed_dims=(32, 64, 96, 128))))
    outs = backbone(torch.rand(1, 3, 100, 60))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 25, 15), (1, 64, 13, 8), (1, 96, 7, 4), (1, 128, 4, 2)]
    frozen = {n.split('.')[1] for n, p in backbone.model.named_parameters() if not p.requires_grad}
    assert frozen == {'stem', 'stages'} and not any(
        not p.requires_grad for n, p in backbone.model.named_parameters() if n.startswith('model.stages.1.'))


CONFIGS = ['configs/biformer_ade20k.py'] + sorted(
    p[len(str(REPO_ROOT)) + 1:] for p in glob.glob(str(REPO_ROOT / 'configs/biformer/*.py')))


@pytest.mark.parametrize('config', CONFIGS + ['configs/demo/biformer_tiny_ade20k_demo.py'])
def test_configs_load_and_their_necks_match_the_backbone(config):
    from visionattn.mm.config import check_neck_channels, load_config
    cfg = load_config(str(REPO_ROOT / config))
    check_neck_channels(cfg)
    options = cfg.model.backbone.model_kwargs if 'backbone' in cfg.model else cfg.model
    assert options.get('n_win') == {'ade20k': 8, 'coco': 16, 'imagenet': 7, 'demo': 4}[
        next(k for k in ('demo', 'ade20k', 'coco', 'imagenet') if k in config)]


def test_headline_config_is_the_upstream_recipe():
    from visionattn.mm.config import load_config
    cfg = load_config(str(REPO_ROOT / 'configs/biformer_ade20k.py'))
    assert cfg.model.backbone.model_name == 'biformer_small' and cfg.model.backbone.drop_path_rate == 0.3
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.lr == 6e-5
    assert cfg.train_cfg.max_iters == 160000 and cfg.crop_size == (512, 512)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs


@pytest.mark.slow
def test_demo_config_trains_and_evaluates_through_train_py(tmp_path):
    env = dict(__import__('os').environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='2')
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(tmp_path / 'data'), '--tasks', 'ade20k',
                    '--num-train', '4', '--num-val', '2'], cwd=REPO_ROOT, check=True, env=env, capture_output=True)
    work_dir = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/demo/biformer_tiny_ade20k_demo.py', '--work-dir', str(work_dir),
         '--data-root', str(tmp_path / 'data/ade/ADEChallengeData2016'), '--seed', '0', '--cfg-options',
         'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
         'train_dataloader.batch_size=2'],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (work_dir / 'iter_2.pth').is_file()
    assert 'mIoU' in json.loads((work_dir / 'metrics_val.json').read_text())['metrics']
