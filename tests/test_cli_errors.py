"""Expected user mistakes in the train and test programs: one line `error: ...`, exit status 2, no traceback.

The programs' ``main(argv)`` (what ``tools/train.py``, ``python -m visionattn.cli.train`` and the
``visionattn-train`` script run) is called in this process, so that the many cases share one import of the
OpenMMLab stack; one case runs as a real subprocess for the exit status seen by a shell.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from visionattn.cli import test as test_program
from visionattn.cli import train as train_program
from visionattn.demo_data import make_demo_data
from visionattn.errors import MissingFileError

SEG_DEMO = 'configs/demo/upernet_resnet18_ade20k_demo.py'


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp('demo'), ['ade20k'], num_train=1, num_val=1)['ade20k']


@pytest.fixture(autouse=True)
def warnings_restored():
    """The programs route Python warnings to their log file; undo that after each case."""
    yield
    logging.captureWarnings(False)
    logger = logging.getLogger('py.warnings')
    logger.handlers.clear()
    logger.propagate = True


def run(program, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        program.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert 'Traceback' not in err
    assert err.startswith('error: '), err
    return err


def test_missing_data(tmp_path, capsys):
    err = run(train_program, ['configs/timm/upernet_resnet50_ade20k.py', '--work-dir', str(tmp_path),
                              '--data-root', str(tmp_path / 'nowhere')], capsys)
    assert err.splitlines()[0] == f'error: train_dataloader: dataset path {tmp_path / "nowhere"} does not exist.'
    assert not list(tmp_path.glob('*/*.log'))  # stopped before the Runner existed


@pytest.mark.parametrize('options, first_line', [
    (['--cfg-options', 'train_cfg.max_iter=3'], "error: --cfg-options key 'train_cfg.max_iter': IterBasedTrainLoop "
                                                "(at train_cfg) takes no argument 'max_iter'. Did you mean ['max_iters'"),
    (['--cfg-options', 'train_cfg.max_iters=-3'], 'error: train_cfg.max_iters must be a whole number of iterations, '
                                                  '1 or more; got -3'),
    (['--cfg-options', 'model.backbone.model_name=resnet5'], "error: unknown timm model 'resnet5'. Did you mean"),
    (['--cfg-options', 'model.backbone.out_indices=5'], 'error: model.backbone: out_indices must be a non-empty '
                                                        'list or tuple of stage numbers, e.g. (0, 1, 2, 3), got 5'),
    (['--cfg-options', 'model.backbone.out_indices=(1,2,3)'], 'error: model.decode_head.in_index [0, 1, 2, 3] picks '
                                                              'backbone outputs that do not exist'),
    (['--cfg-options', 'model.backbone.frozen_stages=9'], 'error: model.backbone: frozen_stages must be an int in '
                                                          '-1..4 for resnet18'),
    (['--epochs', '1'], 'error: this config trains for 300 iterations (train_cfg.max_iters), so its length is set '
                        'with --iters N'),
    (['--cfg-options', 'model.decode_head.type=UperHead'], "error: the config names type 'UperHead', which is not "
                                                           "registered in mmseg::model. Did you mean ['UPerHead'"),
])
def test_bad_option(options, first_line, ade_root, tmp_path, capsys):
    err = run(train_program, [SEG_DEMO, '--work-dir', str(tmp_path), '--data-root', str(ade_root), *options], capsys)
    assert err.splitlines()[0].startswith(first_line), err


def test_bad_config_file(tmp_path, capsys):
    config = tmp_path / 'my_config.py'
    config.write_text("_base_ = '%s'\nmodel = dict(backbone=dict(\n    depth=50,,))\n" % (REPO_ROOT / SEG_DEMO))
    err = run(train_program, [str(config), '--work-dir', str(tmp_path)], capsys)
    assert err.splitlines()[0] == f'error: syntax error in config {config}, line 3: invalid syntax'
    err = run(train_program, ['upernet_resnet18_ade20k_dem', '--work-dir', str(tmp_path)], capsys)
    assert err.startswith('error: config upernet_resnet18_ade20k_dem is neither a file nor a config shipped with '
                          'visionattn')


def test_missing_checkpoint(ade_root, tmp_path, capsys):
    err = run(test_program, [SEG_DEMO, str(tmp_path / 'missing.pth'), '--data-root', str(ade_root)], capsys)
    assert err == f'error: checkpoint {tmp_path / "missing.pth"} does not exist\n'


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(MissingFileError):
        train_program.main(['no/such/config.py', '--debug'])


def test_exit_status_of_the_real_program(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'visionattn.cli.train', 'no_such_config', '--work-dir', str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert proc.returncode == 2
    assert proc.stderr.startswith('error: config no_such_config is neither a file nor a config shipped with visionattn')
    assert 'Traceback' not in proc.stderr
