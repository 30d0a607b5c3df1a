"""tools/gpu_check.sh, the prepared GPU check, end to end in its CPU mode (``--device cpu --quick``): every step
writes its table with the device name and rows for every backend of both ops, and a backend that disagrees with
the PyTorch path (``--perturb``: its results moved by a relative error above the bounds) ends the check at step
1 with exit status 1 and MISMATCH lines, before anything is measured."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

CHECKED = {('na1d', 'triton'), ('na1d', 'flex'), ('na1d', 'reference'), ('na2d', 'triton'), ('na2d', 'flex'),
           ('na2d', 'reference'), ('na3d', 'triton'), ('na3d', 'flex'), ('na3d', 'reference'),
           ('bra', 'triton'), ('bra', 'flex'), ('bra', 'reference')}


def _gpu_check(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHON': sys.executable, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(['bash', str(REPO_ROOT / 'tools' / 'gpu_check.sh'), '--device', 'cpu', '--quick',
                           '--out', str(out), *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp('gpu_check')
    return _gpu_check(out), out


def test_quick_mode_runs_every_step_and_writes_its_files(quick_run) -> None:
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ['auto_backends.json', 'check_cpu.md', 'kernels_cpu.json',
                                                      'kernels_cpu.md', 'models_cpu.json', 'models_cpu.md']
    for phase in ('1/3 correctness', '2/3 kernel tables', '3/3 model throughput', 'done: wrote'):
        assert phase in proc.stdout


def test_correctness_table_has_every_backend_of_every_op(quick_run) -> None:
    _, out = quick_run
    text = (out / 'check_cpu.md').read_text()
    assert text.startswith('Device: CPU (')
    rows = [line.split(' | ') for line in text.splitlines() if line.startswith('| n') or line.startswith('| bra')]
    assert {(row[0].removeprefix('| ').split()[0], row[1]) for row in rows} == CHECKED
    assert all(row[-1] == 'ok |' for row in rows)
    # forward and the q/k/v gradients (and the RPB's where there is one) of every backend with a CPU backward
    assert all(int(row[3]) >= 4 for row in rows if row[1] != 'flex')
    assert text.rstrip().endswith(', 0 mismatched')


def test_kernel_and_auto_tables_measure_every_implementation(quick_run) -> None:
    _, out = quick_run
    kernels = json.loads((out / 'kernels_cpu.json').read_text())
    assert kernels['header'].startswith('Device: CPU (')
    measured = {(r['op'], r['impl'], r['mode']) for r in kernels['rows'] if r['ms'] is not None}
    for op, impls in {'na': ('triton', 'torch', 'reference', 'sdpa'),
                      'bra': ('triton', 'torch', 'gather', 'sdpa')}.items():
        assert {(op, impl, mode) for impl in impls for mode in ('fwd', 'fwd+bwd')} <= measured
    assert (out / 'kernels_cpu.md').read_text().startswith(kernels['header'])
    auto = json.loads((out / 'auto_backends.json').read_text())
    assert auto['device'].startswith('CPU (') and set(auto['ops']) == {'na', 'bra'}
    assert all(auto['ops'][op]['triton'] > 0 for op in ('na', 'bra'))


def test_model_table_has_inference_and_training(quick_run) -> None:
    _, out = quick_run
    models = json.loads((out / 'models_cpu.json').read_text())
    assert models['header'].startswith('Device: CPU (')
    [row] = models['rows']
    assert 'error' not in row and row['spec']['model'] == 'nat_mini'
    assert row['infer']['img_s'] > 0 and row['train']['img_s'] > 0


def test_a_backend_that_disagrees_fails_the_check_loudly(tmp_path) -> None:
    proc = _gpu_check(tmp_path, '--perturb', '0.05')  # 5% relative error: above every dtype's bound
    assert proc.returncode == 1
    mismatches = [line for line in proc.stderr.splitlines() if line.startswith('MISMATCH: ')]
    for op, backend in CHECKED:
        assert any(line.startswith(f'MISMATCH: {op} ') and f' {backend} fp32 ' in line for line in mismatches), \
            (op, backend)
    table = (tmp_path / 'check_cpu.md').read_text()
    assert table.rstrip().endswith(f'{len(mismatches)} tensors compared, {len(mismatches)} mismatched')
    assert 'GPU CHECK FAILED' in proc.stderr
    assert '2/3 kernel tables' not in proc.stdout  # nothing is measured on wrong kernels
    assert [p.name for p in tmp_path.iterdir()] == ['check_cpu.md']
