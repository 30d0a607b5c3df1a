"""tools/make_demo_data.py: deterministic stand-ins that the real dataset classes read."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionattn  # noqa: F401  (mmseg/mmdet import on mmcv-lite)
from conftest import REPO_ROOT


def make(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(out), '--num-train', '4',
                           '--num-val', '2', *extra], cwd=REPO_ROOT, capture_output=True, text=True)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob('*') if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('demo')
    assert make(out).returncode == 0
    return out


def test_same_seed_same_bytes_other_seed_other_bytes(demo, tmp_path):
    assert make(tmp_path / 'again').returncode == 0
    assert digest(tmp_path / 'again') == digest(demo)
    assert make(tmp_path / 'other', '--seed', '1').returncode == 0
    assert digest(tmp_path / 'other') != digest(demo)


def test_ade20k_layout_reads_with_reduce_zero_label(demo):
    from mmengine.registry import init_default_scope
    from mmseg.datasets import ADE20KDataset
    init_default_scope('mmseg')
    root = demo / 'ade/ADEChallengeData2016'
    dataset = ADE20KDataset(data_root=str(root), data_prefix=dict(img_path='images/validation',
                                                                  seg_map_path='annotations/validation'),
                            pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True)])
    assert len(dataset) == 2
    sample = dataset[0]
    labels = np.unique(sample['gt_seg_map'])
    assert 0 in labels  # 'wall' (annotation value 1) after reducing the zero label
    assert labels.max() == 255 or labels.max() < 150  # unlabelled boundaries become the ignore index
    assert sample['img'].shape[:2] == sample['gt_seg_map'].shape


def test_coco_layout_reads_with_boxes_and_polygons(demo):
    from mmdet.datasets import CocoDataset
    dataset = CocoDataset(data_root=str(demo / 'coco'), ann_file='annotations/instances_train2017.json',
                          data_prefix=dict(img='train2017/'), pipeline=[])
    assert len(dataset.metainfo['classes']) == 80
    instances = [inst for i in range(len(dataset)) for inst in dataset[i]['instances']]
    assert instances and all(len(inst['mask'][0]) >= 8 for inst in instances)
    assert {dataset.metainfo['classes'][inst['bbox_label']] for inst in instances} <= {'person', 'car', 'sports ball'}


def test_imagenet_layout_reads_as_mmpretrain_imagenet(demo):
    from mmpretrain.datasets import ImageNet
    train = ImageNet(data_root=str(demo / 'imagenet'), split='train', pipeline=[])
    val = ImageNet(data_root=str(demo / 'imagenet'), split='val', pipeline=[])
    assert len(train) == 5 * 4 and len(val) == 5 * 2
    assert {train[i]['gt_label'] for i in range(len(train))} == set(range(5))
    assert (demo / 'imagenet/train/n01440764').is_dir()


def test_classes_are_visually_distinct(demo):
    """A nearest-colour rule separates the demo's segmentation classes: the data are learnable."""
    root = demo / 'ade/ADEChallengeData2016'
    means = {}
    for img_path in (root / 'images/training').glob('*.jpg'):
        image = np.asarray(Image.open(img_path), np.float32)
        label = np.asarray(Image.open(root / 'annotations/training' / (img_path.stem + '.png')))
        for cls in np.unique(label):
            if cls:
                means.setdefault(int(cls), []).append(image[label == cls].mean(0))
    centres = {c: np.mean(v, 0) for c, v in means.items()}
    assert len(centres) >= 3
    distances = [np.linalg.norm(a - b) for i, a in centres.items() for j, b in centres.items() if i < j]
    assert min(distances) > 20


def test_refuses_to_write_into_real_data(tmp_path):
    real = tmp_path / 'coco'
    real.mkdir()
    (real / 'instances_train2017.json').write_text('{}')
    proc = make(tmp_path, '--tasks', 'coco')
    assert proc.returncode != 0
    assert 'not made by make_demo_data.py' in proc.stderr
    assert (real / 'instances_train2017.json').read_text() == '{}'
