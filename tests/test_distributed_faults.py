"""Distributed faults. Two CPU (gloo) processes under torchrun (tools/dist_train.sh): when one is killed the
job ends at once, torchrun naming it; when one is stopped (SIGSTOP) the other gives up after the collective
timeout (--dist-timeout) with one line naming the rank that did not answer. Checkpoints written before the
fault stay as they were.

Each torchrun test trains a tiny timm model (test_resnet) on the ImageNet stand-in until it has saved a
checkpoint, then injects the fault into rank 1.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from visionattn.cli.run_options import add_run_arguments, load_run_config
from visionattn.demo_data import make_demo_data
from visionattn.errors import ConfigError
from visionattn.mm.distributed import DEFAULT_GLOO_TIMEOUT_S, collective_timeout_s, unresponsive_peers_named

TIMEOUT_S = 12  # --dist-timeout of the stopped-rank test; the stopped rank is named after it + half of it


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory) -> Path:
    return make_demo_data(tmp_path_factory.mktemp('dist_demo'), ['imagenet'], num_train=2, num_val=1)['imagenet']


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def children(pid: int) -> dict[int, int]:
    """{rank: pid} of the worker processes torchrun (``pid``) started."""
    ranks = {}
    for entry in Path('/proc').iterdir():
        try:
            if entry.name.isdigit() and int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1]) == pid:
                env = dict(v.split(b'=', 1) for v in (entry / 'environ').read_bytes().split(b'\0') if b'=' in v)
                ranks[int(env[b'RANK'])] = int(entry.name)
        except (OSError, KeyError, IndexError):  # a process that ended meanwhile
            continue
    return ranks


def running(pid: int) -> bool:
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f'the job ended ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}')
        if time.monotonic() > deadline:
            raise AssertionError(f'no {what} within {timeout} s:\n{log.read_text()[-4000:]}')
        time.sleep(0.2)


def start_training(imagenet: Path, work_dir: Path) -> tuple[subprocess.Popen, Path, dict[int, int], Path, str]:
    """A 2-process run that trains until stopped; returns it once it has saved a checkpoint, with that
    checkpoint's path and digest."""
    log = work_dir.parent / f'{work_dir.name}.log'
    env = dict(os.environ, OMP_NUM_THREADS='1', PORT=str(free_port()), PYTHON=sys.executable, PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', 'configs/demo/resnet18_imagenet_demo.py', '2', '--work-dir', str(work_dir),
         '--data-root', str(imagenet), '--dist-timeout', str(TIMEOUT_S), '--cfg-options', 'model.model_name=test_resnet',
         'train_cfg.max_epochs=10000', 'train_cfg.val_interval=10000', 'train_dataloader.batch_size=1',
         'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False'],
        cwd=REPO_ROOT, env=env, stdout=log.open('w'), stderr=subprocess.STDOUT)
    try:
        last = work_dir / 'last_checkpoint'
        wait_for(lambda: last.is_file() and last.read_text().strip(), 300, 'checkpoint', proc, log)
        checkpoint = Path(last.read_text().strip())
        ranks = children(proc.pid)
        assert set(ranks) == {0, 1}, ranks
    except BaseException:
        stop_all(proc)
        raise
    return proc, log, ranks, checkpoint, hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def stop_all(proc: subprocess.Popen, ranks: dict[int, int] | None = None) -> None:
    """End the job: its worker processes (those it still has, and ``ranks`` if still training) and torchrun."""
    for pid in {*children(proc.pid).values(), *(ranks or {}).values()}:
        with contextlib.suppress(OSError):  # it ended meanwhile
            if running(pid) and b'tools/train.py' in Path(f'/proc/{pid}/cmdline').read_bytes():
                os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run_config(*argv: str):
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return load_run_config(parser.parse_args([str(REPO_ROOT / 'configs/demo/resnet18_imagenet_demo.py'), *argv]), ())


def test_the_collective_timeout_is_an_option_with_a_default_on_cpu(monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')  # load_run_config sets it for the launcher
    assert run_config('--dist-timeout', '45').env_cfg.dist_cfg.timeout == 45
    assert collective_timeout_s(run_config().env_cfg.dist_cfg) == DEFAULT_GLOO_TIMEOUT_S == 300
    with pytest.raises(ConfigError, match='--dist-timeout must be a positive number of seconds, got 0'):
        run_config('--dist-timeout', '0')
    with pytest.raises(RuntimeError, match='Timed out'):  # not distributed on CPU: errors pass unchanged
        with unresponsive_peers_named(None, 300):
            raise RuntimeError('Timed out waiting 300000ms for recv operation to complete')


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_at_once_and_is_named(imagenet, tmp_path):
    proc, log, ranks, checkpoint, digest = start_training(imagenet, tmp_path / 'work')
    try:
        start = time.monotonic()
        os.kill(ranks[1], signal.SIGKILL)
        proc.wait(timeout=60)
        ended_after = time.monotonic() - start
    finally:
        stop_all(proc, ranks)
    report = log.read_text()
    assert proc.returncode != 0 and ended_after < 30, (proc.returncode, ended_after, report[-3000:])
    assert re.search(r'rank\s*: 1 \(local_rank: 1\)\s+exitcode\s*: -9 .*\(SIGKILL\)', report), report[-3000:]
    assert not running(ranks[0])
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest
    assert Path((tmp_path / 'work' / 'last_checkpoint').read_text().strip()).is_file()


@pytest.mark.slow
def test_a_stopped_rank_is_named_after_the_collective_timeout(imagenet, tmp_path):
    proc, log, ranks, checkpoint, digest = start_training(imagenet, tmp_path / 'work')
    try:
        start = time.monotonic()
        os.kill(ranks[1], signal.SIGSTOP)
        wait_for(lambda: not running(ranks[0]), TIMEOUT_S * 1.5 + 60, 'exit of rank 0', proc, log)
        rank0_ended_after = time.monotonic() - start
        # torchrun now stops the silent process: SIGTERM, which a stopped process cannot act on, then SIGKILL
        # 30 s later (fixed in torchrun). The test does not wait for that: it sends the SIGKILL itself.
        wait_for(lambda: f'Sending process {ranks[1]} closing signal SIGTERM' in log.read_text(), 30,
                 'torchrun stopping rank 1', proc, log)
        os.kill(ranks[1], signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        stop_all(proc, ranks)
    report = log.read_text()
    assert rank0_ended_after < TIMEOUT_S * 1.5 + 30, (rank0_ended_after, report[-3000:])
    error = re.search(r'^(?:\[rank0\]:)?(error: .*)$', report, re.MULTILINE)
    # gloo reports an expired collective timeout with either message, varying between runs
    assert error and re.match(
        r'error: rank 1 of this distributed run did not answer: a collective operation failed on rank 0 '
        rf'\("(Timed out waiting {TIMEOUT_S * 1000}ms|Application timeout caused pair closure)', error.group(1)
    ), report[-3000:]
    assert f'raise the collective timeout ({TIMEOUT_S} s) with --dist-timeout SECONDS' in error.group(1)
    assert re.search(r'rank\s*: 0 \(local_rank: 0\)\s+exitcode\s*: 2 ', report) and proc.returncode != 0
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest
