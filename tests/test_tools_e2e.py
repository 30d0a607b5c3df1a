"""tools/train.py and tools/test.py end to end on the demo data: train -> checkpoint -> resume -> test.

Each task runs the real command-line tools in a subprocess, on a small copy of the demo data.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='2')


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('demo')
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(root), '--num-train', '8',
                    '--num-val', '4'], cwd=REPO_ROOT, check=True, env=ENV, capture_output=True)
    return root


def run_tool(*args: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
    return proc


def metrics(work_dir: Path, mode: str) -> dict:
    return json.loads((work_dir / f'metrics_{mode}.json').read_text())


def train_resume_test(config: str, data_root: Path, work_dir: Path, first: list[str], resumed: list[str],
                      checkpoint: str, resumed_checkpoint: str, progress_key: str, test: list[str] = ()) -> Path:
    run_tool('tools/train.py', config, '--work-dir', str(work_dir), '--data-root', str(data_root),
             '--seed', '0', '--cfg-options', *first)
    assert (work_dir / checkpoint).is_file()
    first_metrics = metrics(work_dir, 'val')
    proc = run_tool('tools/train.py', config, '--work-dir', str(work_dir), '--data-root', str(data_root),
                    '--resume', '--cfg-options', *resumed)
    assert f'Auto resumed from the latest checkpoint {work_dir / checkpoint}' in proc.stdout + proc.stderr
    assert (work_dir / resumed_checkpoint).is_file()
    assert metrics(work_dir, 'val')[progress_key] > first_metrics[progress_key]

    show_dir = work_dir / 'pictures'
    proc = run_tool('tools/test.py', config, str(work_dir / resumed_checkpoint), '--work-dir',
                    str(work_dir / 'test'), '--data-root', str(data_root), '--show-dir', str(show_dir),
                    *(['--cfg-options', *test] if test else []))
    assert metrics(work_dir / 'test', 'test')['metrics']
    assert 'Prediction pictures:' in proc.stdout
    return show_dir


def test_segmentation_train_resume_test(demo_root, tmp_path):
    show_dir = train_resume_test(
        'configs/demo/upernet_resnet18_ade20k_demo.py', demo_root / 'ade/ADEChallengeData2016', tmp_path,
        ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
         'train_dataloader.batch_size=2'],
        ['train_cfg.max_iters=3', 'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=3',
         'train_dataloader.batch_size=2'],
        'iter_2.pth', 'iter_3.pth', 'iter')
    assert 'mIoU' in metrics(tmp_path / 'test', 'test')['metrics']
    assert len(list(show_dir.rglob('*.png'))) == 4


def test_detection_train_resume_test(demo_root, tmp_path):
    show_dir = train_resume_test(
        'configs/demo/mask_rcnn_resnet18_coco_demo.py', demo_root / 'coco', tmp_path,
        ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
        ['train_cfg.max_epochs=2', 'train_cfg.val_interval=1'],
        'epoch_1.pth', 'epoch_2.pth', 'epoch',
        test=['model.test_cfg.rcnn.score_thr=0.0'])  # an almost untrained detector scores below 0.05
    assert 'coco/segm_mAP' in metrics(tmp_path / 'test', 'test')['metrics']
    assert len(list(show_dir.glob('*.jpg'))) == 4


def test_classification_train_resume_test(demo_root, tmp_path):
    show_dir = train_resume_test(
        'configs/demo/resnet18_imagenet_demo.py', demo_root / 'imagenet', tmp_path,
        ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=8'],
        ['train_cfg.max_epochs=2', 'train_dataloader.batch_size=8'],
        'epoch_1.pth', 'epoch_2.pth', 'epoch')
    assert 'accuracy/top1' in metrics(tmp_path / 'test', 'test')['metrics']
    assert len(list(show_dir.rglob('*.png'))) == 20


def test_two_process_gloo_training_on_cpu(demo_root, tmp_path):
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', 'configs/demo/resnet18_imagenet_demo.py', '2', '--work-dir', str(tmp_path),
         '--data-root', str(demo_root / 'imagenet'), '--cfg-options', 'train_cfg.max_epochs=1',
         'train_dataloader.batch_size=4'],
        cwd=REPO_ROOT, env=dict(ENV, OMP_NUM_THREADS='1', PORT='29517', PYTHON=sys.executable),
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert 'Distributed training: True' in log
    # 40 training images, batch 4 per process, 2 processes: 5 iterations per epoch (10 on one process)
    assert 'Epoch(train) [1][5/5]' in log
    assert metrics(tmp_path, 'val')['metrics']['accuracy/top1'] >= 0


def test_missing_data_root_stops_at_once_with_directions(tmp_path):
    proc = run_tool('tools/train.py', 'configs/timm/upernet_resnet50_ade20k.py', '--work-dir', str(tmp_path),
                    '--data-root', str(tmp_path / 'nowhere'), expect_ok=False)
    assert proc.returncode != 0
    assert f'{tmp_path / "nowhere"}' in proc.stderr
    assert 'ADEChallengeData2016.zip' in proc.stderr and 'visionattn.cli.make_demo_data' in proc.stderr
    assert not list(tmp_path.glob('*/*.log'))  # stopped before building anything
