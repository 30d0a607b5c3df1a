"""Every medical and remote-sensing recipe trains, evaluates and draws its predictions on its demo stand-in.

tools/train.py and tools/test.py run in this process (one import of torch/mmseg/mmdet/mmpretrain for all
recipes) with the recipe's own datasets, pipelines and metrics; ``--cfg-options`` only shrinks the run: a
tiny timm model (``test_resnet``), 64-128 px images, two iterations or epochs, a handful of images.
EuroSAT-MS starts from a local RGB checkpoint that timm adapts to 13 bands.
"""
from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import tifffile
import timm
import torch
from mmengine.config import Config
from PIL import Image

import visionattn.demo_data
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# recipe -> (stand-in maker, its folder, (train, val) counts, image size, metric keys val/test must report);
# val and test runs score the first two images of their split.
RECIPES = {
    'medical/upernet_convnext_tiny_kvasir_seg': ('kvasir_seg', 'Kvasir-SEG', (10, 5), 64,
                                                 ['mDice', 'Dice/polyp', 'Specificity/polyp', 'mDice_image']),
    'medical/upernet_convnext_tiny_isic2018': ('isic2018_task1', 'ISIC2018', (3, 2), 64,
                                               ['IoU/lesion', 'Recall/lesion', 'thresholded_Jaccard']),
    'medical/convnext_tiny_ham10000': ('isic2018_task3', 'ISIC2018', (1, 1), 64,
                                       ['per_class/balanced_accuracy', 'per_class/sensitivity/MEL']),
    'remote_sensing/upernet_convnext_tiny_loveda': ('loveda', 'LoveDA', (4, 2), 64, ['mIoU', 'IoU/building']),
    'remote_sensing/upernet_convnext_tiny_potsdam': ('potsdam', 'potsdam', (3, 2), 64, ['mIoU', 'Dice/building']),
    'remote_sensing/faster_rcnn_resnet50_fpn_dior': ('dior', 'DIOR', (4, 2), 128, ['pascal_voc/mAP']),
    'remote_sensing/resnet50_eurosat': ('eurosat', 'EuroSAT', (1, 2), 64,
                                        ['accuracy/top1', 'per_class/specificity/AnnualCrop']),
    'remote_sensing/resnet50_eurosat_ms': ('eurosat_ms', 'EuroSATallBands', (1, 2), 64,
                                           ['accuracy/top1', 'per_class/sensitivity/AnnualCrop']),
    'remote_sensing/convnext_tiny_nwpu_resisc45': ('nwpu_resisc45', 'NWPU-RESISC45', (2, 4), 64,
                                                   ['accuracy/top5', 'per_class/balanced_accuracy']),
}


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('recipes')
    tool = visionattn.demo_data
    for maker, _, (num_train, num_val), size, _ in RECIPES.values():
        tool.MAKERS[maker](out, np.random.default_rng([0, tool.TASK_STREAMS[maker]]), size, num_train, num_val)
    return out


def run_tool(script: str, *args: str) -> str:
    """Run tools/<script> as ``python tools/<script> args`` would, in this process; return its stdout."""
    stdout = io.StringIO()
    with mock.patch.object(sys, 'argv', [script, *args]), contextlib.redirect_stdout(stdout):
        runpy.run_path(str(REPO_ROOT / 'tools' / script), run_name='__main__')
    return stdout.getvalue()


def _small(value: Any, size: int) -> Any:
    return size if isinstance(value, int) else (size, size)


def shrink_options(cfg: Config, size: int) -> dict[str, Any]:
    """--cfg-options that make a recipe's run tiny without changing what it runs."""
    options: dict[str, Any] = {}
    for loader in LOADERS:
        options.update({f'{loader}.num_workers': 0, f'{loader}.persistent_workers': False, f'{loader}.batch_size': 2})
        if loader != 'train_dataloader':
            options[f'{loader}.dataset.indices'] = 2
        for i, transform in enumerate(cfg[loader].dataset.pipeline):
            for key in ('scale', 'crop_size'):
                if key in transform:
                    options[f'{loader}.dataset.pipeline.{i}.{key}'] = _small(transform[key], size)
    model = cfg.model
    if model.type == 'visionattn.TimmClassifier':
        options.update({'model.model_name': 'test_resnet', 'model.pretrained': False,
                        'train_dataloader.dataset.indices': 4, 'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 2})
        return options
    channels = [32, 48, 192, 96]  # test_resnet's stages
    options.update({'model.backbone.model_name': 'test_resnet', 'model.backbone.pretrained': False})
    if 'decode_head' in model:  # mmseg EncoderDecoder + UPerNet
        options.update({'model.data_preprocessor.size': (size, size), 'model.decode_head.in_channels': channels,
                        'model.decode_head.channels': 16, 'model.auxiliary_head.in_channels': channels[2],
                        'model.auxiliary_head.channels': 8, 'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2,
                        'default_hooks.checkpoint.interval': 2})
    else:  # mmdet two-stage detector
        options.update({'model.neck.in_channels': channels, 'model.neck.out_channels': 16,
                        'model.rpn_head.in_channels': 16, 'model.rpn_head.feat_channels': 16,
                        'model.roi_head.bbox_roi_extractor.out_channels': 16, 'model.roi_head.bbox_head.in_channels': 16,
                        'model.roi_head.bbox_head.fc_out_channels': 32, 'train_dataloader.dataset.indices': 4,
                        'train_cfg.max_epochs': 1,
                        'model.test_cfg.rcnn.score_thr': 0.0})  # an untrained detector scores below 0.05
    return options


def as_cli(options: dict[str, Any]) -> list[str]:
    def text(v: Any) -> str:
        return f"[{','.join(map(str, v))}]" if isinstance(v, list) else str(v).replace(' ', '')
    return [f'{k}={text(v)}' for k, v in options.items()]


@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_recipe_trains_tests_and_draws_on_its_stand_in(recipe, demo, tmp_path):
    _, folder, _, size, keys = RECIPES[recipe]
    config = f'configs/{recipe}.py'
    options = shrink_options(Config.fromfile(REPO_ROOT / config), size)
    if recipe.endswith('eurosat_ms'):  # start from an RGB checkpoint, adapted to 13 bands by timm
        torch.save(timm.create_model('test_resnet').state_dict(), tmp_path / 'rgb_pretrained.pth')
        options['model.pretrained'] = str(tmp_path / 'rgb_pretrained.pth')
    data_root = str(demo / folder)

    out = run_tool('train.py', str(REPO_ROOT / config), '--work-dir', str(tmp_path), '--data-root', data_root,
                   '--seed', '0', '--cfg-options', *as_cli(options))
    assert 'Training finished' in out
    val = json.loads((tmp_path / 'metrics_val.json').read_text())['metrics']
    checkpoint = (tmp_path / 'last_checkpoint').read_text().strip()
    assert Path(checkpoint).is_file()

    pictures = tmp_path / 'pictures'
    out = run_tool('test.py', str(REPO_ROOT / config), checkpoint, '--work-dir', str(tmp_path / 'test'),
                   '--data-root', data_root, '--show-dir', str(pictures), '--cfg-options', *as_cli(options))
    test = json.loads((tmp_path / 'test' / 'metrics_test.json').read_text())['metrics']
    for key in keys:
        assert key in val or f'pascal_voc/{key}' in val, (key, sorted(val))
        assert key in test, (key, sorted(test))
    drawn = [p for p in pictures.rglob('*') if p.suffix in ('.png', '.jpg')]
    assert len(drawn) == 2, drawn  # one picture per test image (indices=2)


def readme_config() -> str:
    """The example config of the README's "Fine-tune on your own data" section."""
    text = (REPO_ROOT / 'README.md').read_text()
    start = text.index('```python\n# configs/my_project/my_data.py') + len('```python\n')
    return text[start:text.index('```', start)]


def make_own_multiband_data(root: Path, rng: np.random.Generator) -> None:
    """4-band uint16 GeoTIFF tiles and index masks (0 background, 1 water: dark NIR, 2 forest: bright NIR)."""
    for split, count in (('train', 4), ('val', 2), ('test', 2)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'masks' / split).mkdir(parents=True)
        for i in range(count):
            mask = np.zeros((48, 48), np.uint8)
            mask[rng.integers(0, 20):rng.integers(24, 48), :20] = 1
            mask[:, 30:] = 2
            nir = np.choose(mask, [2400, 300, 4200]).astype(np.float64)
            bands = np.stack([np.full((48, 48), 420.0), np.full((48, 48), 610.0), np.full((48, 48), 530.0), nir])
            bands += rng.normal(0, 50, bands.shape)
            tifffile.imwrite(root / 'images' / split / f'tile_{i}.tif', bands.clip(0, 65535).astype(np.uint16),
                             photometric='minisblack', planarconfig='separate')
            mask[0, :4] = 255  # a few unlabelled pixels
            Image.fromarray(mask).save(root / 'masks' / split / f'tile_{i}.png')


def test_readme_own_data_example_trains_tests_and_draws(tmp_path):
    from visionattn.mm.transforms import band_statistics
    configs = tmp_path / 'configs'
    (configs / 'my_project').mkdir(parents=True)
    for folder in ('_base_', 'remote_sensing'):
        (configs / folder).symlink_to(REPO_ROOT / 'configs' / folder)
    config = configs / 'my_project' / 'my_data.py'
    config.write_text(readme_config())
    data = tmp_path / 'data'
    make_own_multiband_data(data, np.random.default_rng(0))
    train_images = sorted(str(p) for p in (data / 'images' / 'train').glob('*.tif'))
    mean, std = band_statistics(train_images)
    pixels = np.concatenate([tifffile.imread(p).reshape(4, -1) for p in train_images], axis=1)
    assert np.allclose(mean, pixels.mean(1), atol=1e-3) and np.allclose(std, pixels.std(1), atol=1e-3)

    options = as_cli(shrink_options(Config.fromfile(config), 32))
    work = tmp_path / 'work'
    run_tool('train.py', str(config), '--work-dir', str(work), '--data-root', str(data), '--cfg-options', *options)
    assert 'IoU/water' in json.loads((work / 'metrics_val.json').read_text())['metrics']
    pictures = tmp_path / 'pictures'
    run_tool('test.py', str(config), (work / 'last_checkpoint').read_text().strip(), '--work-dir', str(work / 'test'),
             '--data-root', str(data), '--show-dir', str(pictures), '--cfg-options', *options)
    assert 'Specificity/forest' in json.loads((work / 'test' / 'metrics_test.json').read_text())['metrics']
    drawn = sorted(pictures.rglob('*.png'))
    assert len(drawn) == 2 and np.asarray(Image.open(drawn[0])).std() > 10  # stretched, not black
