"""Bad data stops with the file, what is wrong and what to do, in training and evaluation alike, through
the configs' own pipelines (ADE20K, COCO, ImageNet on their demo stand-ins); --skip-bad-samples leaves such
files out, logs them and counts them in the metrics JSON; an error inside a DataLoader worker reaches the
user as one line.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS
from PIL import Image

import visionattn.mm  # noqa: F401  (registers the visionattn scope)
from conftest import REPO_ROOT
from visionattn.demo_data import make_demo_data
from visionattn.errors import ConfigError, DataError, MissingFileError
from visionattn.mm.config import load_config
from visionattn.mm.transforms import LoadSegAnnotations
from visionattn.mm.validation import (SKIPPED_KEY, CheckedDataset, collate_skipping_bad_samples,
                                      enable_bad_sample_skipping)

SEG_CONFIG = 'configs/demo/upernet_resnet18_ade20k_demo.py'
ADE = 'ADEChallengeData2016'  # under the stand-in's ade/


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('validation_demo')
    make_demo_data(out, ['ade20k', 'coco', 'imagenet'], num_train=4, num_val=2)
    return out


def copy_of(demo: Path, tmp_path: Path, task: str) -> Path:
    shutil.copytree(demo / task, tmp_path / task)
    return tmp_path / task


def build(config: str, loader: str, data_root: Path, **dataset_options):
    """The dataset of ``loader`` in ``config`` on ``data_root`` (not serialized: mmengine's gc.collect() for it
    takes seconds in a process that has imported everything)."""
    cfg = load_config(str(REPO_ROOT / config), data_root=str(data_root))
    return DATASETS.build(dict(cfg[loader]['dataset'], serialize_data=False, **dataset_options))


def seg_datasets(demo: Path, tmp_path: Path) -> dict:
    """The training and validation datasets of the demo segmentation config, on a copy of the ADE20K stand-in."""
    root = copy_of(demo, tmp_path, 'ade') / ADE
    return {loader: build(SEG_CONFIG, loader, root) for loader in ('train_dataloader', 'val_dataloader')}


def save_mask(path: str, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


# --- images -------------------------------------------------------------------------------------------
def zero_bytes(path: str) -> None:
    Path(path).write_bytes(b'')


def truncated(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])


def not_an_image(path: str) -> None:
    Path(path).write_text('<html>404 Not Found</html>')


def removed(path: str) -> None:
    Path(path).unlink()


@pytest.mark.parametrize('damage, error, what', [
    (zero_bytes, DataError, r'is empty \(0 bytes\)'),
    (truncated, DataError, r'cannot be decoded as an image .*truncated'),
    (not_an_image, DataError, r'cannot be decoded as an image .*not an image file'),
    (removed, MissingFileError, 'does not exist'),
])
def test_a_bad_image_stops_training_and_evaluation_with_the_file_and_the_fix(demo, tmp_path, damage, error, what):
    for loader, dataset in seg_datasets(demo, tmp_path).items():
        path = dataset.get_data_info(0)['img_path']
        damage(path)
        with pytest.raises(error, match=f'{re.escape(path)} {what}.*--skip-bad-samples'):
            dataset[0]


@pytest.mark.parametrize('mask, message', [
    (np.full((128, 128), 200, np.uint8),  # ADE20K has 150 classes: file values 1..150 (0 = ignored)
     r'mask values \{199\} \(in the file: \{200\}\) are not class indices of this 150-class dataset'),
    (np.stack([np.full((128, 128), v, np.uint8) for v in (1, 2, 3)], -1), 'is a colour mask'),
    (np.ones((64, 96), np.uint8), r'is 64x96 \(HxW\) but its image .* is 128x128'),
])
def test_a_bad_mask_stops_training_and_evaluation(demo, tmp_path, mask, message):
    for loader, dataset in seg_datasets(demo, tmp_path).items():
        info = dataset.get_data_info(0)
        save_mask(info['seg_map_path'], mask)
        with pytest.raises(DataError, match=f'{re.escape(info["seg_map_path"])}:? {message}'):
            dataset[0]


def test_a_degenerate_image_stops_before_it_breaks_a_resize(demo, tmp_path):
    for loader, dataset in seg_datasets(demo, tmp_path).items():
        info = dataset.get_data_info(0)
        Image.fromarray(np.zeros((2, 1000, 3), np.uint8)).save(info['img_path'], 'JPEG')
        save_mask(info['seg_map_path'], np.ones((2, 1000), np.uint8))
        with pytest.raises(DataError, match=r'is 2x1000 pixels \(HxW\): its aspect ratio 500:1 exceeds max_aspect_ratio'):
            dataset[0]


def test_reduce_zero_label_keeps_the_ignore_index_as_mmseg_does(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'img.png')
    save_mask(str(tmp_path / 'mask.png'), np.array([[0, 1, 150, 255]] * 4, np.uint8))
    results = LoadSegAnnotations()(dict(img_path=str(tmp_path / 'img.png'), seg_map_path=str(tmp_path / 'mask.png'),
                                        ori_shape=(4, 4), seg_fields=[], reduce_zero_label=True, num_classes=150))
    assert results['gt_seg_map'][0].tolist() == [255, 0, 149, 255]


# --- splits and annotation files --------------------------------------------------------------------------
def test_an_image_without_its_mask_and_an_empty_split_stop_when_the_dataset_is_built(demo, tmp_path):
    root = copy_of(demo, tmp_path, 'ade')
    mask = root / ADE / 'annotations/training/ADE_train_00000002.png'
    mask.unlink()
    with pytest.raises(MissingFileError, match=f'ADE20KDataset: 1 of 4 images have no mask, e.g. .*{mask.name}'):
        build(SEG_CONFIG, 'train_dataloader', root / ADE)
    for image in (root / ADE / 'images/validation').iterdir():
        image.unlink()
    with pytest.raises(MissingFileError, match=r"ADE20KDataset: no images ending in '\.jpg' found in .*validation"):
        build(SEG_CONFIG, 'val_dataloader', root / ADE)


def test_coco_missing_annotation_file_empty_split_and_bad_image(demo, tmp_path):
    root = copy_of(demo, tmp_path, 'coco')
    config = 'configs/demo/mask_rcnn_resnet18_coco_demo.py'
    dataset = build(config, 'train_dataloader', root)
    path = dataset.get_data_info(0)['img_path']
    zero_bytes(path)
    with pytest.raises(DataError, match=f'{re.escape(path)} is empty'):
        dataset.prepare_data(0)
    annotations = root / 'annotations/instances_val2017.json'
    content = json.loads(annotations.read_text())
    annotations.write_text(json.dumps(dict(content, images=[], annotations=[])))
    with pytest.raises(MissingFileError, match='CocoDataset: the split is empty: no samples found in .*instances_val2017'):
        build(config, 'val_dataloader', root)
    annotations.unlink()
    with pytest.raises(MissingFileError, match=f'CocoDataset: annotation file {re.escape(str(annotations))} does not'):
        build(config, 'val_dataloader', root)


def test_imagenet_empty_split_and_bad_image(demo, tmp_path):
    root = copy_of(demo, tmp_path, 'imagenet')
    config = 'configs/demo/resnet18_imagenet_demo.py'
    dataset = build(config, 'val_dataloader', root)
    path = dataset.get_data_info(0)['img_path']
    truncated(path)
    with pytest.raises(DataError, match=f'{re.escape(path)} cannot be decoded'):
        dataset[0]
    (root / 'meta/val.txt').write_text('')
    with pytest.raises(MissingFileError, match='ImageNet: the split is empty'):
        build(config, 'val_dataloader', root)


def test_every_config_loads_its_data_through_the_validation_layer():
    """Every dataset a config names is a CheckedDataset, and every image and mask loader a checked one: the
    configs that define pipelines are the dataset bases and the demos; the rest inherit theirs."""
    from mmcv.transforms import LoadImageFromFile as StockLoadImage
    from mmengine.registry import TRANSFORMS
    from mmseg.datasets.transforms import LoadAnnotations as StockLoadSegAnnotations

    from visionattn.mm.transforms import LoadImageFromFile, LoadMultiBandImage
    defining = [*sorted((REPO_ROOT / 'configs/_base_/datasets').glob('*.py')),
                *sorted((REPO_ROOT / 'configs/demo').glob('*.py'))]
    for path in sorted((REPO_ROOT / 'configs').rglob('*.py')):
        if path not in defining:
            assert not re.search(r"type='(visionattn\.)?(LoadImageFromFile|LoadAnnotations|LoadSegAnnotations)'",
                                 path.read_text()), f'{path} defines its own loaders: check them here'
    for path in defining:
        cfg = Config.fromfile(str(path))
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            dataset = cfg[loader]['dataset']
            with DATASETS.switch_scope_and_registry(cfg.default_scope) as registry:
                assert issubclass(registry.get(dataset['type']), CheckedDataset), (path.name, loader)
            with TRANSFORMS.switch_scope_and_registry(cfg.default_scope) as registry:
                classes = {registry.get(t['type']) for t in dataset['pipeline']}
            assert classes & {LoadImageFromFile, LoadMultiBandImage}, (path.name, loader)
            assert not classes & {StockLoadImage, StockLoadSegAnnotations}, (path.name, loader)
