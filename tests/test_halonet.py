"""HaloNet H0-H7: the paper's parameter counts, timm's halonet_h1 as H1, the value-expanded block,
model-card metadata and the input sizes the halo layers accept."""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import pytest
import timm
import torch
from timm.layers.halo_attn import HaloAttn
from timm.models.byobnet import ByobNet, get_layer_fns

import visionattn  # noqa: F401
from visionattn.models.halonet import HALONET_PAPER_CONFIGS, ValueExpandedSelfAttnBlock, halonet_model_cfg

# Parameters (millions) in the paper's table of HaloNet models (arXiv:2103.12731).
PAPER_PARAMS_M = {'halonet_h0': 5.5, 'halonet_h1': 8.1, 'halonet_h2': 9.4, 'halonet_h3': 11.8,
                  'halonet_h4': 19.1, 'halonet_h5': 30.7, 'halonet_h6': 43.4, 'halonet_h7': 67.4}


def _meta_model(name: str) -> torch.nn.Module:
    with torch.device('meta'):
        return timm.create_model(name)


@pytest.mark.parametrize('name', sorted(PAPER_PARAMS_M))
def test_parameter_count_matches_the_paper(name):
    params = sum(p.numel() for p in _meta_model(name).parameters()) / 1e6
    assert abs(params - PAPER_PARAMS_M[name]) < 0.06, f'{name}: {params:.3f}M'


def test_h1_is_timms_halonet_h1():
    ours = ByobNet(halonet_model_cfg('halonet_h1'), device='meta')
    theirs = _meta_model('halonet_h1')
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}
    assert 'halonet_h1' not in visionattn.models.halonet.default_cfgs  # timm's entry point is kept


@pytest.mark.parametrize('name', ['halonet_h0', 'halonet_h5', 'halonet_h7'])
def test_halo_layers_follow_the_paper_table(name):
    block_size, halo_size, rv, rb, l3, df, _ = HALONET_PAPER_CONFIGS[name]
    model = _meta_model(name)
    halos = [m for m in model.modules() if isinstance(m, HaloAttn)]
    assert len(halos) == 3 + 3 + l3 + 3
    assert {(m.block_size, m.halo_size) for m in halos} == {(block_size, halo_size)}
    first = model.stages[0][0]
    assert first.self_attn.dim_out_qk == 64 and first.self_attn.dim_out_v == int(64 * rv)
    assert first.conv3_1x1.conv.out_channels == int(64 * rb)
    assert model.num_features == (df or int(512 * rb))


def test_value_expanded_block_forward_backward():
    layers = replace(get_layer_fns(halonet_model_cfg('halonet_h5')),
                     self_attn=partial(HaloAttn, block_size=4, halo_size=1))  # tiny blocks for a quick test
    block = ValueExpandedSelfAttnBlock(value_ratio=2.5, in_chs=16, out_chs=32, stride=2, bottle_ratio=0.5,
                                       layers=layers)
    assert block.self_attn.dim_out_v == 40 and block.self_attn.dim_out_qk == 16
    x = torch.randn(2, 16, 16, 16, requires_grad=True)
    out = block(x)
    assert out.shape == (2, 32, 8, 8)
    out.sum().backward()
    assert x.grad is not None and block.self_attn.kv.weight.grad is not None


@pytest.mark.parametrize('name', sorted(n for n in PAPER_PARAMS_M if n != 'halonet_h1'))
def test_model_card_metadata_and_default_input_size(name):
    cfg = timm.models.get_pretrained_cfg(name)
    assert cfg.paper_ids == 'arXiv:2103.12731' and cfg.license == 'apache-2.0'
    assert cfg.origin_url == 'https://arxiv.org/abs/2103.12731'
    assert not cfg.has_weights and any('no official weights' in note for note in cfg.notes)
    side, block_size = cfg.input_size[-1], HALONET_PAPER_CONFIGS[name][0]
    assert side % (block_size * 32) == 0  # the default size needs no padding
    assert side == HALONET_PAPER_CONFIGS[name][-1] or (name == 'halonet_h7' and side == 640)


def test_h0_runs_at_its_default_size():
    with torch.device('meta'):
        model = timm.create_model('halonet_h0', num_classes=7)
        assert model(torch.empty(1, 3, 256, 256)).shape == (1, 7)
        with pytest.raises(AssertionError):
            model(torch.empty(1, 3, 224, 224))  # why TimmBackbone pads: 224 is no multiple of 256
