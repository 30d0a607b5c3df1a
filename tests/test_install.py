"""Installed use outside the repository: the wheel carries the configs, tools and kernels as files, and a
demo config trains from an empty folder with the installed console script (quiet console, TensorBoard events).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT


def _copy_sources(target: Path) -> None:
    """What a wheel is built from (symlinks kept, so the build sees the checkout's layout), without build
    leftovers; the build then writes nothing into the checkout."""
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info', 'build', 'dist')
    for name in ('setup.cfg', 'pyproject.toml', 'README.md', 'LICENSE', 'MANIFEST.in'):
        shutil.copy2(REPO_ROOT / name, target / name)
    for name in ('visionattn', 'kernels', 'configs', 'tools'):
        shutil.copytree(REPO_ROOT / name, target / name, symlinks=True, ignore=ignore)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    source, out = tmp_path_factory.mktemp('source'), tmp_path_factory.mktemp('wheel')
    _copy_sources(source)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(out),
                    str(source)], check=True, capture_output=True)
    (built,) = out.glob('visionattn-*.whl')
    return built


def test_wheel_carries_configs_tools_and_kernels_as_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        entry_points = archive.read(next(n for n in infos if n.endswith('.dist-info/entry_points.txt'))).decode()
    configs = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / 'configs').rglob('*.py')}
    assert {f'visionattn/.mim/{c}' for c in configs} <= set(infos)
    assert {'visionattn/.mim/tools/train.py', 'visionattn/.mim/tools/test.py'} <= set(infos)
    kernels = {f'visionattn/kernels/{p.name}' for p in (REPO_ROOT / 'kernels').glob('*.py')}
    assert kernels and kernels <= set(infos)
    for name in kernels | {'visionattn/.mim/configs/demo/biformer_tiny_ade20k_demo.py'}:  # regular files, not links
        assert (infos[name].external_attr >> 16) & 0o170000 != 0o120000 and infos[name].file_size > 0, name
    assert not any(n.startswith(('kernels/', 'configs/', 'tools/')) for n in infos)  # nothing at the top level
    for script in ('visionattn-train = visionattn.cli.train:main', 'visionattn-test = visionattn.cli.test:main',
                   'visionattn-make-demo-data = visionattn.cli.make_demo_data:main'):
        assert script in entry_points


@pytest.mark.slow
def test_installed_wheel_trains_a_demo_config_from_an_empty_folder(wheel, tmp_path):
    """pip install --target, then from an empty folder: demo data from the package, 2 iterations of the demo
    config found by name, with TensorBoard; the console shows the summary, progress and metrics only."""
    target, folder = tmp_path / 'site', tmp_path / 'empty'
    folder.mkdir()
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(target), str(wheel)],
                   check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(target), OMP_NUM_THREADS='2', PYTHONUNBUFFERED='1')
    subprocess.run([sys.executable, '-m', 'visionattn.cli.make_demo_data', '--tasks', 'ade20k', '--num-train', '2',
                    '--num-val', '1'], cwd=folder, env=env, check=True, capture_output=True)
    proc = subprocess.run([str(target / 'bin' / 'visionattn-train'), 'demo/biformer_tiny_ade20k_demo', '--iters', '2',
                           '--tensorboard', '--cfg-options', 'train_dataloader.batch_size=2'],
                          cwd=folder, env=env, capture_output=True, text=True)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-6000:]

    work_dir = folder / 'work_dirs' / 'biformer_tiny_ade20k_demo'
    config = target / 'visionattn' / '.mim' / 'configs' / 'demo' / 'biformer_tiny_ade20k_demo.py'
    assert f'train: {config}' in console  # the installed package's config, found by name
    assert 'param_scheduler rescaled from 200 to 2 iterations' in console
    assert 'eta:' in console and 'mIoU:' in console and f'Checkpoints will be saved to {work_dir}' in console
    assert f'last checkpoint: {work_dir / "iter_2.pth"}' in console  # the interval (100) fitted to the run
    (log,) = work_dir.glob('*/*.log')
    log_text = log.read_text()
    for noise in ('Hooks will be executed', 'System environment', 'paramwise_options', 'Warning:', 'per class results'):
        assert noise not in console, noise
    for kept in ('Hooks will be executed', 'System environment', 'per class results', 'UserWarning'):
        assert kept in log_text, kept

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    (events,) = work_dir.glob('*/vis_data/events.out.tfevents.*')
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    scalars = accumulator.Tags()['scalars']
    assert {'loss', 'lr', 'mIoU'} <= set(scalars), scalars
    assert [e.step for e in accumulator.Scalars('loss')] == [1]  # logged at iteration 1 (interval: 20 or the end)
    assert accumulator.Scalars('mIoU')[0].value >= 0
