"""Trained checkpoints back to timm (issue 20): ``tools/export.py timm`` turns a ``tools/train.py`` checkpoint
into a timm state dict and hub folder, which timm loads strictly and which computes what the trained model did;
the other programs that take ``--checkpoint`` read the same checkpoint under safe loading.

Two one-iteration training runs of demo configs (ResNet-18: a segmentor's TimmBackbone, a TimmClassifier),
each a subprocess that imports the OpenMMLab stack: slow.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from conftest import REPO_ROOT
from visionattn.weights import create_model_with_weights

pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1')
SEG = 'configs/demo/upernet_resnet18_ade20k_demo.py'
CLS = 'configs/demo/resnet18_imagenet_demo.py'
SHORT = ['train_dataloader.batch_size=2', 'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'val_dataloader.batch_size=1', 'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False']


def trained_openmmlab_model(config: str, checkpoint: Path) -> torch.nn.Module:
    """The config's OpenMMLab model with the checkpoint's weights, loaded strictly."""
    from mmengine.registry import MODELS, DefaultScope

    from visionattn.checkpoint import read_checkpoint, state_dict_from
    from visionattn.mm.config import load_config
    cfg = load_config(str(REPO_ROOT / config))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MODELS.build(cfg.model)
    model.load_state_dict(state_dict_from(read_checkpoint(checkpoint), str(checkpoint)))
    return model.eval()


def run_tool(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One iteration of each demo config: ``{config: checkpoint}``."""
    root = tmp_path_factory.mktemp('export_timm')
    run_tool('tools/make_demo_data.py', '--out', str(root / 'data'), '--tasks', 'ade20k', 'imagenet',
             '--num-train', '2', '--num-val', '1')
    found = {}
    for config, data_root, length in ((SEG, 'ade/ADEChallengeData2016', '--iters'), (CLS, 'imagenet', '--epochs')):
        work_dir = root / Path(config).stem
        run_tool('tools/train.py', config, '--work-dir', str(work_dir), '--data-root', str(root / 'data' / data_root),
                 length, '1', '--seed', '0', '--cfg-options', *SHORT)
        found[config] = next(work_dir.glob('*_1.pth'))
    return found


def test_segmentor_backbone_to_timm_file_and_hub_folder(checkpoints, tmp_path):
    checkpoint = checkpoints[SEG]
    proc = run_tool('tools/export.py', 'timm', SEG, str(checkpoint), '--out', str(tmp_path / 'backbone.safetensors'),
                    '--hub-dir', str(tmp_path / 'hub'))
    assert 'resnet18 backbone' in proc.stdout
    trained = trained_openmmlab_model(SEG, checkpoint).backbone
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        want = trained(x)
    out_indices = json.loads((tmp_path / 'hub' / 'config.json').read_text())['model_args']['out_indices']
    from_file = timm.create_model('resnet18', pretrained=True, features_only=True, out_indices=out_indices,
                                  pretrained_cfg_overlay=dict(file=str(tmp_path / 'backbone.safetensors'))).eval()
    from_hub = timm.create_model(f'local-dir:{tmp_path / "hub"}', pretrained=True).eval()
    for model in (from_file, from_hub):
        with torch.no_grad():
            got = model(x)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
    # the trained backbone, strictly: every tensor of the checkpoint's backbone lands in the timm model
    backbone = create_model_with_weights('resnet18', str(checkpoint), features_only=True, out_indices=out_indices)
    with torch.no_grad():
        for g, w in zip(backbone.eval()(x), want):
            torch.testing.assert_close(g, w)


def test_classifier_to_timm_gives_the_same_logits(checkpoints, tmp_path):
    checkpoint = checkpoints[CLS]
    run_tool('tools/export.py', 'timm', CLS, str(checkpoint), '--out', str(tmp_path / 'classifier.safetensors'),
             '--hub-dir', str(tmp_path / 'hub'))
    trained = trained_openmmlab_model(CLS, checkpoint)
    num_classes = trained.model.num_classes
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = trained(x, mode='tensor')
    from_file = timm.create_model('resnet18', pretrained=True, num_classes=num_classes,
                                  pretrained_cfg_overlay=dict(file=str(tmp_path / 'classifier.safetensors'))).eval()
    from_hub = timm.create_model(f'local-dir:{tmp_path / "hub"}', pretrained=True).eval()
    for model in (from_file, from_hub):
        with torch.no_grad():
            torch.testing.assert_close(model(x), want)


def test_programs_taking_checkpoint_read_training_checkpoints_safely(checkpoints, tmp_path):
    """visualize.py (config and checkpoint) and export.py onnx (a timm model with --checkpoint) read the
    training checkpoint, whose mmengine log objects load under the safe-loading allowlist."""
    run_tool('tools/make_demo_data.py', '--out', str(tmp_path / 'data'), '--tasks', 'imagenet', '--num-train', '1',
             '--num-val', '1')
    image = next((tmp_path / 'data').rglob('*.JPEG'), None) or next((tmp_path / 'data').rglob('*.jpg'))
    run_tool('tools/visualize.py', 'predictions', SEG, str(checkpoints[SEG]), str(image),
             '--out', str(tmp_path / 'predictions.png'))
    assert (tmp_path / 'predictions.png').is_file()
    num_classes = trained_openmmlab_model(CLS, checkpoints[CLS]).model.num_classes
    proc = run_tool('tools/export.py', 'program', 'resnet18', '--checkpoint', str(checkpoints[CLS]),
                    '--model-kwargs', json.dumps(dict(num_classes=num_classes)), '--out', str(tmp_path / 'model.pt2'))
    assert 'wrote' in proc.stdout and (tmp_path / 'model.pt2').is_file()
