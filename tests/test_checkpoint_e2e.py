"""Checkpoints end to end on tiny demo data (timm's test networks, a few iterations, one shared work dir):
a training killed while it writes a checkpoint loses nothing and resumes from the last complete one without
network; test.py evaluates without network; a checkpoint of another model or a damaged one stops with one
line; the stock train and test tools of mmseg, mmdet and mmpretrain run the demo configs and read the
checkpoints safely."""
from __future__ import annotations

import hashlib
import json
import os
import runpy
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import venv
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, disable_network
from visionattn.checkpoint import verify_checkpoint

pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='2',
           PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]))
SEG, DET, CLS = (str(REPO_ROOT / 'configs/demo' / name) for name in (
    'upernet_resnet18_ade20k_demo.py', 'mask_rcnn_resnet18_coco_demo.py', 'resnet18_imagenet_demo.py'))
ADE = 'data/demo/ade/ADEChallengeData2016'  # where the demo configs look, relative to the working folder
LOADERS = [f'{split}_dataloader.{option}' for split in ('train', 'val', 'test')
           for option in ('num_workers=0', 'persistent_workers=False')]
# timm's tiny test networks, with heads to match: a checkpoint is a few MB and an iteration a fraction of a second
OPTIONS = {
    SEG: ['model.backbone.model_name=test_convnext', 'model.decode_head.in_channels=[24,32,48,64]',
          'model.decode_head.channels=16', 'model.auxiliary_head.in_channels=48', 'model.auxiliary_head.channels=16',
          'train_dataloader.batch_size=2', *LOADERS],
    DET: ['model.backbone.model_name=test_resnet', 'model.neck.in_channels=[32,48,192,96]',
          'model.test_cfg.rcnn.score_thr=0.0', 'train_dataloader.batch_size=2', 'train_cfg.max_epochs=1', *LOADERS],
    CLS: ['model.model_name=test_resnet', 'train_dataloader.batch_size=8', 'train_cfg.max_epochs=1', *LOADERS],
}
SEG_TRAINING = ['train_cfg.max_iters=3', 'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=1',
                'default_hooks.checkpoint.max_keep_ckpts=1', *OPTIONS[SEG]]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    """A working folder with the demo stand-ins where the demo configs expect them (``data/demo``)."""
    from visionattn.demo_data import make_demo_data
    root = tmp_path_factory.mktemp('checkpoints')
    make_demo_data(root / 'data/demo', tasks=('ade20k', 'coco', 'imagenet'), num_train=4, num_val=2)
    return root


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_while_writing(proc: subprocess.Popen, fifo: Path, log: Path) -> dict:
    """Wait until the trainer writes its checkpoint into ``fifo`` (the temporary file of that save), take what
    the work dir holds at that moment, and kill the trainer with SIGKILL in the middle of the write."""
    received, killed = [], threading.Event()

    def read() -> None:  # keeps its end open until the kill: the writer is blocked inside its write then
        with open(fifo, 'rb') as f:
            received.append(f.read(1 << 16))
            killed.wait(60)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 900
    while not received and proc.poll() is None and time.monotonic() < deadline:
        reader.join(0.2)
    if not received:  # the run ended (or hung) before it saved: release the reader, report the log
        proc.kill()
        proc.wait()
        killed.set()
        with open(fifo, 'wb'):
            pass
        raise AssertionError(f'the training never wrote {fifo.name}:\n{log.read_text()[-4000:]}')
    work_dir = fifo.parent
    during = dict(files=sorted(p.name for p in work_dir.iterdir() if p.is_file()),
                  last_checkpoint=(work_dir / 'last_checkpoint').read_text(),
                  iter_1=_digest(work_dir / 'iter_1.pth'), written=len(received[0]))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed.set()
    reader.join()
    return during


@pytest.fixture(scope='module')
def seg_run(workspace) -> dict:
    """tools/train.py killed while writing iter_2.pth, then resumed (in this process) without network to iter 3.

    The save of iteration 2 writes into a named pipe laid where the Runner puts its temporary file, so the kill
    lands in the middle of the write, every time.
    """
    import huggingface_hub.constants

    from visionattn.cli.train import main as train
    work_dir = workspace / 'seg'
    work_dir.mkdir()
    args = [SEG, '--work-dir', str(work_dir), '--seed', '0', '--cfg-options', *SEG_TRAINING]
    log = workspace / 'killed_run.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, str(REPO_ROOT / 'tools/train.py'), *args], cwd=workspace, env=ENV,
                                stdout=out, stderr=subprocess.STDOUT)
    os.mkfifo(work_dir / f'.iter_2.pth.partial-{proc.pid}')
    during = _kill_while_writing(proc, work_dir / f'.iter_2.pth.partial-{proc.pid}', log)
    after_kill = dict(files=sorted(p.name for p in work_dir.iterdir()),
                      last_checkpoint=(work_dir / 'last_checkpoint').read_text(),
                      iter_1=_digest(work_dir / 'iter_1.pth'))
    verify_checkpoint(work_dir / 'iter_1.pth')
    with pytest.MonkeyPatch.context() as patch:  # resuming a whole checkpoint needs no pretrained weights
        patch.chdir(workspace)
        patch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
        attempts = disable_network(patch)
        train([*args, 'model.backbone.pretrained=True', '--resume'])
    resumed_log = max(work_dir.glob('*/*.log'), key=lambda p: p.stat().st_mtime).read_text()
    return dict(work_dir=work_dir, pid=proc.pid, during=during, after_kill=after_kill, resumed_log=resumed_log,
                network_attempts=attempts)


def test_a_kill_while_a_checkpoint_is_written_loses_nothing_and_resume_continues(seg_run):
    work_dir, pid = seg_run['work_dir'], seg_run['pid']
    partial = f'.iter_2.pth.partial-{pid}'
    during, after_kill = seg_run['during'], seg_run['after_kill']
    # mid-write (max_keep_ckpts=1): the previous checkpoint is still there and last_checkpoint names it
    assert during['written'] > 0 and 'iter_1.pth' in during['files'] and 'iter_2.pth' not in during['files']
    assert during['last_checkpoint'] == str(work_dir / 'iter_1.pth')
    # after the kill: unchanged, and no iter_2.pth, complete or partial, under a name resume would pick
    assert after_kill['iter_1'] == during['iter_1'] and after_kill['last_checkpoint'] == during['last_checkpoint']
    assert 'iter_2.pth' not in after_kill['files'] and partial in after_kill['files']
    log = seg_run['resumed_log']
    assert f'Removing {work_dir / partial}: the unfinished file of a save that was interrupted' in log
    assert f'Auto resumed from the latest checkpoint {work_dir / "iter_1.pth"}' in log
    assert 'init_weights() skipped' in log and not seg_run['network_attempts']
    # the resumed run finished: one complete checkpoint (max_keep_ckpts=1), metrics of iteration 3
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_3.pth'] and not list(work_dir.glob('.*'))
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_3.pth')
    assert json.loads((work_dir / 'metrics_val.json').read_text())['iter'] == 3
    checkpoint = torch.load(work_dir / 'iter_3.pth', weights_only=True)  # plain safe loading, no allowlist
    assert checkpoint['meta']['iter'] == 3 and checkpoint['message_hub']['log_scalars']['train/loss']


def test_resume_falls_back_from_a_damaged_newest_checkpoint_and_an_empty_pointer(seg_run, tmp_path):
    from visionattn.cli.train import main as train
    from visionattn.errors import CheckpointError
    work_dir = tmp_path / 'seg'
    work_dir.mkdir()
    good = work_dir / 'iter_3.pth'
    good.write_bytes((seg_run['work_dir'] / 'iter_3.pth').read_bytes())
    (work_dir / 'iter_4.pth').write_bytes(good.read_bytes()[:4096])  # what a full disk leaves
    (work_dir / 'last_checkpoint').write_text('')  # killed while the pointer was rewritten
    args = [SEG, '--work-dir', str(work_dir), '--data-root', str(seg_run['work_dir'].parent / ADE), '--cfg-options',
            'train_cfg.max_iters=4', 'train_cfg.val_begin=5', 'default_hooks.checkpoint.interval=1', *OPTIONS[SEG],
            '--resume']  # no validation: not what this test is about
    train(args)
    log = max(work_dir.glob('*/*.log'), key=lambda p: p.stat().st_mtime).read_text()
    assert f'{work_dir / "last_checkpoint"} is empty' in log
    assert (f'the newest checkpoint cannot be used: {work_dir / "iter_4.pth"} ({work_dir / "iter_4.pth"} is truncated'
            in log) and f'Resuming from {good}, the newest complete checkpoint' in log
    verify_checkpoint(work_dir / 'iter_4.pth')  # the run reached iteration 4 again and saved it completely
    (work_dir / 'iter_4.pth').write_bytes(b'')
    good.write_bytes(good.read_bytes()[:100])
    (work_dir / 'last_checkpoint').unlink()
    with pytest.raises(CheckpointError, match=r'--resume: no checkpoint in .* can be read: .*iter_4.pth is empty'):
        train(args + ['--debug'])


def test_test_program_evaluates_without_network(seg_run, tmp_path, no_network, monkeypatch):
    """The config asks for hub weights (pretrained=True); evaluating a trained checkpoint never fetches them."""
    import huggingface_hub.constants

    from visionattn.cli.test import main as test
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    test([SEG, str(seg_run['work_dir'] / 'iter_3.pth'), '--work-dir', str(tmp_path), '--data-root',
          str(seg_run['work_dir'].parent / ADE), '--cfg-options', *OPTIONS[SEG], 'model.backbone.pretrained=True'])
    assert 'mIoU' in json.loads((tmp_path / 'metrics_test.json').read_text())['metrics'] and not no_network


def test_checkpoints_that_do_not_fit_stop_with_one_line(seg_run, tmp_path, capsys):
    from visionattn.cli.test import main as test
    checkpoint = seg_run['work_dir'] / 'iter_3.pth'
    data_root = str(seg_run['work_dir'].parent / 'data/demo/imagenet')
    args = [CLS, str(checkpoint), '--work-dir', str(tmp_path), '--data-root', data_root, '--cfg-options', *OPTIONS[CLS]]
    with pytest.raises(SystemExit) as caught:
        test(args)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and 'Traceback' not in err, err
    err = err.strip().splitlines()[-1]
    assert err.startswith(f'error: {checkpoint} does not fit the TimmClassifier of resnet18_imagenet_demo: ')
    assert ('looks like the training run of config upernet_resnet18_ade20k_demo (timm model test_convnext; FCNHead, '
            'UPerHead; 150 classes)') in err and '--non-strict' in err
    test(args + ['--non-strict'])  # loads what fits (nothing here) and says so
    assert 'Loading only the 0 matching tensors (--non-strict' in capsys.readouterr().out
    damaged = tmp_path / 'damaged.pth'
    damaged.write_bytes(checkpoint.read_bytes()[:-100])
    with pytest.raises(SystemExit):
        test([SEG, str(damaged), '--work-dir', str(tmp_path)])
    err = capsys.readouterr().err
    assert err.startswith(f'error: {damaged} is truncated or damaged') and err.count('\n') == 1, err  # nothing built


# ---------------------------------------------------------------------------------------------
# OpenMMLab's own tools
# ---------------------------------------------------------------------------------------------
def _stock_tool(package: str, name: str) -> Path:
    return Path(sysconfig.get_paths()['purelib']) / package / '.mim' / 'tools' / f'{name}.py'


def _run_stock_tool(monkeypatch, package: str, name: str, *args: str) -> None:
    monkeypatch.setattr(sys, 'argv', [str(_stock_tool(package, name)), *args])
    runpy.run_path(str(_stock_tool(package, name)), run_name='__main__')


def _fresh_environment_with_startup_hook(folder: Path) -> Path:
    """A virtual environment that sees this one's packages and has visionattn's mmcv startup hook installed (what
    ``tools/setup_env.sh`` does to ``.venv``); returns its python."""
    from visionattn.mmcv_startup import install
    venv.create(folder, with_pip=False, symlinks=True)
    site_packages = Path(sysconfig.get_paths(vars=dict(base=str(folder), platbase=str(folder)))['purelib'])
    (site_packages / 'shared-site-packages.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    install(site_packages)
    return folder / 'bin' / 'python'


@pytest.mark.parametrize('package,config,checkpoint,metric', [
    ('mmseg', SEG, 'iter_2.pth', 'mIoU'),
    ('mmdet', DET, 'epoch_1.pth', 'coco/bbox_mAP'),
    ('mmpretrain', CLS, 'epoch_1.pth', 'accuracy/top1'),
])
def test_stock_openmmlab_tools_train_and_test_the_demo_configs(workspace, monkeypatch, package, config, checkpoint,
                                                                 metric):
    """Their train.py honours runner_type (the project's Runner); mmseg's test.py builds mmengine's plain Runner,
    which loads the project's checkpoints with plain safe loading; mmdet's test.py imports mmdet's engine before
    the config, in a fresh interpreter, where the startup hook provides the mmcv stand-in."""
    monkeypatch.chdir(workspace)
    work_dir = workspace / f'stock_{package}'
    # a checkpoint after a step or two, no validation (test.py evaluates)
    options = OPTIONS[config] + ['train_cfg.val_begin=100'] + (
        ['train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2'] if config == SEG else [])
    _run_stock_tool(monkeypatch, package, 'train', config, '--work-dir', str(work_dir), '--cfg-options', *options)
    test_args = [config, str(work_dir / checkpoint), '--work-dir', str(work_dir / 'test'), '--cfg-options', *options]
    if package == 'mmdet':
        python = _fresh_environment_with_startup_hook(workspace / 'venv')
        proc = subprocess.run([str(python), str(_stock_tool(package, 'test')), *test_args], cwd=workspace, env=ENV,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    else:
        _run_stock_tool(monkeypatch, package, 'test', *test_args)
    assert metric in json.loads((work_dir / 'test' / 'metrics_test.json').read_text())['metrics']
