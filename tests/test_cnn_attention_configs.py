"""The CBAM / Triplet configs: their backbones take converted ImageNet weights; the demo versions train."""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from mmengine.registry import init_default_scope

from conftest import REPO_ROOT
from visionattn.layers import CBAM, TripletAttention
from visionattn.mm.config import load_config

CONFIGS = {  # config -> (scope, timm model whose weights the backbone takes, plug-in class, plug-in name)
    'configs/cnn_attention/faster_rcnn_r50_triplet_fpn_1x_coco.py': ('mmdet', 'resnet50_triplet', TripletAttention,
                                                                    'triplet_attention'),
    'configs/cnn_attention/upernet_r50_cbam_ade20k.py': ('mmseg', 'resnet50_cbam', CBAM, 'cbam'),
}


def _build_backbone(config: str, scope: str, **cfg_options):
    cfg = load_config(str(REPO_ROOT / config), cfg_options or None, None, None)
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    return registry.build(cfg.model.backbone)


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_config_takes_the_converted_imagenet_weights(config, tmp_path, monkeypatch):
    scope, timm_name, plugin_cls, plugin_name = CONFIGS[config]
    source = timm.create_model(timm_name)
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-1, 1)
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'imagenet.pth')
    converted = tmp_path / 'converted.pth'
    monkeypatch.setattr(sys, 'argv', ['convert_attention_resnet.py', str(tmp_path / 'imagenet.pth'), str(converted),
                                      '--model', timm_name])
    runpy.run_path(str(REPO_ROOT / 'tools/convert_attention_resnet.py'), run_name='__main__')

    backbone = _build_backbone(config, scope, **{'model.backbone.init_cfg.checkpoint': str(converted)})
    assert all(isinstance(getattr(block, plugin_name), plugin_cls)
               for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4) for block in layer)
    backbone.init_weights()
    reference = source.state_dict()
    for key, value in backbone.state_dict().items():
        timm_key = key.replace(f'.{plugin_name}.', '.se.')
        if not key.endswith('num_batches_tracked'):
            torch.testing.assert_close(value, reference[timm_key], msg=f'{key} was not initialised from {timm_key}')


@pytest.mark.slow
@pytest.mark.parametrize('config, data, options, metric', [
    ('configs/demo/faster_rcnn_r50_triplet_coco_demo.py', 'coco',
     ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'train_dataloader.batch_size=2',
      'model.test_cfg.rcnn.score_thr=0.0'], 'coco/bbox_mAP'),
    ('configs/demo/upernet_r50_cbam_ade20k_demo.py', 'ade/ADEChallengeData2016',
     ['train_cfg.max_iters=3', 'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=3',
      'train_dataloader.batch_size=2'], 'mIoU'),
])
def test_demo_config_trains(config, data, options, metric, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='2')
    demo = tmp_path / 'demo'
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(demo), '--tasks',
                    'coco' if data == 'coco' else 'ade20k', '--num-train', '4', '--num-val', '2'],
                   cwd=REPO_ROOT, check=True, env=env, capture_output=True)
    work_dir = tmp_path / 'work'
    proc = subprocess.run([sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir), '--data-root',
                           str(demo / data), '--seed', '0', '--cfg-options', *options],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert metric in json.loads((work_dir / 'metrics_val.json').read_text())['metrics']
    assert list(work_dir.glob('*.pth')) + list(work_dir.glob('*/*.pth'))
