"""The quiet console: mmengine's dumps and third-party warnings reach the log file only."""
from __future__ import annotations

import io
import logging
import warnings

import pytest

from visionattn.console import QuietConsole, hold_warnings, quiet_console, release_warnings


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord('mmengine', level, __file__, 1, message, None, None)


@pytest.mark.parametrize('message, level', [
    ('\n------------------------------------------------------------\nSystem environment:\n    sys.platform: linux',
     logging.INFO),
    ("Config:\ncrop_size = (\n    128,\n)", logging.INFO),
    ('Hooks will be executed in the following order:\nbefore_run:\n(VERY_HIGH   ) RuntimeInfoHook', logging.INFO),
    ('paramwise_options -- model.layer1.0.bn1.bias:weight_decay=0.0', logging.INFO),
    ('per class results:', logging.INFO),
    ('\n+-------+-------+\n| Class |  IoU  |\n+-------+-------+', logging.INFO),
    ('"FileClient" will be deprecated in future. Please use io functions', logging.WARNING),
    ('The prefix is not set in metric class IoUMetric.', logging.WARNING),
])
def test_dumps_and_deprecations_are_kept_off_the_console(message, level):
    assert not QuietConsole().filter(_record(message, level))


@pytest.mark.parametrize('message, level', [
    ('Iter(train) [1/2]  lr: 2.0000e-03  eta: 0:00:18  time: 18.0249  loss: 6.4914', logging.INFO),
    ('Iter(val) [1/1]    aAcc: 58.5700  mIoU: 11.7700  mAcc: 20.0100', logging.INFO),
    ('Checkpoints will be saved to /tmp/w.', logging.INFO),
    ('SyncBatchNorm has no CPU implementation: reverted to BatchNorm', logging.WARNING),
    ('deprecated settings named in an INFO line stay', logging.INFO),
])
def test_progress_metrics_outputs_and_other_warnings_stay(message, level):
    assert QuietConsole().filter(_record(message, level))


def test_python_warnings_go_to_the_log_file_only(tmp_path):
    console = io.StringIO()
    logger = logging.getLogger('visionattn-test-console')
    logger.handlers[:] = [logging.StreamHandler(console), logging.FileHandler(tmp_path / 'run.log')]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            hold_warnings()
            warnings.warn('before the log file exists', UserWarning)
            quiet_console(logger)
            warnings.warn('while training', DeprecationWarning)
            logger.info('Iter(train) [1/1]')
            logger.info('Hooks will be executed in the following order:\n...')
        for handler in logger.handlers:
            handler.flush()
        log = (tmp_path / 'run.log').read_text()
        assert 'before the log file exists' in log and 'while training' in log and 'Hooks will be executed' in log
        assert console.getvalue() == 'Iter(train) [1/1]\n'
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers.clear()
        logging.captureWarnings(False)
        logging.getLogger('py.warnings').handlers.clear()
        logging.getLogger('py.warnings').propagate = True


def test_a_verbose_run_prints_the_warnings_held_back(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        hold_warnings()
        warnings.warn('held back', UserWarning)
        release_warnings()
    assert 'UserWarning: held back' in capsys.readouterr().err
    assert logging.getLogger('py.warnings').propagate
