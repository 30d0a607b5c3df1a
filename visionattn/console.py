"""A quiet, useful console for runs: what a person reads on screen, everything else in the log file.

mmengine logs at INFO, on the console and in the log file alike, the whole system environment, the full
config (hundreds of lines), the table of hooks per stage, and per-class metric tables (150 rows for
ADE20K); mmengine, mmseg and mmdet add deprecation warnings on every run. The few lines a person needs
(where the config and outputs are, progress with ETA, metrics) drown. With ``console='quiet'`` (the
default of ``visionattn.Runner``; ``--verbose`` or ``console='verbose'`` turns it off):

- :class:`QuietConsole`, a ``logging.Filter`` on the console handler only, holds back the records listed in
  :data:`LOG_FILE_ONLY` (the log file keeps every record);
- Python warnings (``warnings.warn`` of any package) go to the run's log file instead of stderr:
  :func:`hold_warnings` collects those raised before the Runner exists (imports, config loading), and
  :func:`send_warnings_to_log` writes them, and every later one, to the log file (a verbose run prints them,
  :func:`release_warnings`);
- :func:`run_summary` is the short header the programs log instead: config, model, data, schedule, where
  the work dir, log and checkpoints are.

mmengine tags none of its records, so the filter matches them by their text; a record it misses is merely
shown on the console, as before. (This module lives outside :mod:`visionattn.mm` so that the programs can
hold warnings back before the OpenMMLab imports.)
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

__all__ = ['LOG_FILE_ONLY', 'QuietConsole', 'hold_warnings', 'send_warnings_to_log', 'release_warnings',
           'quiet_console', 'run_summary']

# (the record's level, or None for any; a regular expression searched in its message)
_LOG_FILE_ONLY = (
    (None, r'^\s*-{20,}\s*System environment:'),  # mmengine Runner: environment dump
    (None, r'^Config:\n'),  # mmengine Runner: the full config (also saved to the work dir)
    (None, r'^Hooks will be executed in the following order'),  # mmengine Runner: hook table
    (None, r'^Distributed training is not used, all SyncBatchNorm'),  # mmengine Runner, every run
    (None, r'^paramwise_options -- '),  # mmengine optimizer constructor: one line per parameter
    (None, r'^per class results:?\s*$'),  # mmseg IoUMetric: the table follows in the next record
    (None, r'^\s*\+[-+]+\+\n'),  # tables (mmseg per-class, mmdet per-class AP)
    (None, r'^\s*Average (Precision|Recall)\s+\(A[PR]\)'),  # pycocotools summary, logged by mmdet
    (logging.WARNING, r'deprecat'),  # mmengine: "FileClient will be deprecated", "... is the alias of ..."
    (logging.WARNING, r'^The prefix is not set in metric class'),  # mmengine, for mmseg's metrics
)
LOG_FILE_ONLY: tuple[tuple[int | None, re.Pattern], ...] = tuple(
    (level, re.compile(pattern, re.S)) for level, pattern in _LOG_FILE_ONLY)


class QuietConsole(logging.Filter):
    """Drops the records of :data:`LOG_FILE_ONLY` (put it on a console handler, not on the file handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any((level is None or record.levelno == level) and pattern.search(message)
                       for level, pattern in LOG_FILE_ONLY)


class _Held(logging.Handler):
    """Keeps warning records until the run's log file exists."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_WARNINGS = logging.getLogger('py.warnings')


def hold_warnings() -> None:
    """From now on, Python warnings are kept back (not printed) until :func:`send_warnings_to_log`."""
    logging.captureWarnings(True)
    _WARNINGS.propagate = False
    if not any(isinstance(h, _Held) for h in _WARNINGS.handlers):
        _WARNINGS.addHandler(_Held())


def send_warnings_to_log(logger: logging.Logger) -> None:
    """Python warnings go to ``logger``'s log files (and not to the console), those held back included."""
    hold_warnings()
    held = [h for h in _WARNINGS.handlers if isinstance(h, _Held)]
    files = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    for handler in list(_WARNINGS.handlers):
        _WARNINGS.removeHandler(handler)
    for handler in files:
        _WARNINGS.addHandler(handler)
    if not files:  # e.g. ranks other than 0 write no log file
        _WARNINGS.addHandler(logging.NullHandler())
    for record in (r for h in held for r in h.records):
        for handler in files:
            handler.handle(record)


def release_warnings() -> None:
    """Undo :func:`hold_warnings` (a verbose run): the warnings held back are printed, later ones as usual."""
    held = [h for h in _WARNINGS.handlers if isinstance(h, _Held)]
    if not held:
        return
    logging.captureWarnings(False)
    for handler in held:
        _WARNINGS.removeHandler(handler)
        for record in handler.records:
            sys.stderr.write(record.getMessage())
    _WARNINGS.propagate = True


def quiet_console(logger: logging.Logger) -> None:
    """Hold back :data:`LOG_FILE_ONLY` records from ``logger``'s console and send Python warnings to its file."""
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler and not any(isinstance(f, QuietConsole) for f in handler.filters):
            handler.addFilter(QuietConsole())
    send_warnings_to_log(logger)


def _data_roots(cfg: Any, loaders: tuple[str, ...]) -> list[str]:
    roots = []
    for loader in loaders:
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        dataset = dataset.get('dataset', dataset)  # wrappers (RepeatDataset, ...)
        root = dataset.get('data_root')
        if root and os.path.abspath(root) not in roots:
            roots.append(os.path.abspath(root))
    return roots


def _model_line(model: dict) -> str:
    backbone = model.get('backbone') or {}
    name = model.get('model_name') or backbone.get('model_name')
    parts = [str(model.get('type', '?'))]
    if backbone:
        parts.append(f"backbone {backbone.get('type')}" + (f'({name})' if name else ''))
    elif name:
        parts[0] += f'({name})'
    for head in ('neck', 'decode_head', 'rpn_head', 'roi_head', 'bbox_head', 'head'):
        if isinstance(model.get(head), dict) and model[head].get('type'):
            parts.append(f"{head.replace('_', ' ')} {model[head]['type']}")
    return ', '.join(parts)


def _schedule_line(cfg: Any) -> str:
    from visionattn.mm.schedule import SCHEDULE_KEY, train_length
    train_cfg = cfg.get('train_cfg') or {}
    length = train_length(train_cfg)
    if length is None:
        return str(train_cfg)
    unit = 'iterations' if length[0] == 'max_iters' else 'epochs'
    line = f'{length[1]} {unit}'
    written = (cfg.get(SCHEDULE_KEY) or {}).get(length[0])
    if written and written != length[1]:
        line += f' (the config: {written}; param schedulers rescaled)'
    line += f", validation every {train_cfg.get('val_interval', 1)}"
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    if checkpoint.get('interval'):
        per = 'epochs' if checkpoint.get('by_epoch', True) else 'iterations'
        line += f", checkpoint every {checkpoint['interval']} {per}"
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    if optimizer:
        line += f"; {optimizer.get('type')} lr {optimizer.get('lr')}"
    return line


def run_summary(runner: Any, mode: str) -> str:
    """The few lines that say what a train or test run does and where its outputs go."""
    cfg = runner.cfg
    loaders = ('train_dataloader', 'val_dataloader') if mode == 'train' else ('test_dataloader',)
    log_file = next((h.baseFilename for h in runner.logger.handlers if isinstance(h, logging.FileHandler)), None)
    lines = [f'{mode}: {cfg.filename}',
             f'  model:    {_model_line(cfg.get("model") or {})}',
             f'  data:     {", ".join(_data_roots(cfg, loaders)) or "(no data_root)"}']
    if mode == 'train':
        lines.append(f'  schedule: {_schedule_line(cfg)}')
    else:
        lines.append(f'  weights:  {cfg.get("load_from")}')
    lines.append(f'  work dir: {os.path.abspath(runner.work_dir)}')
    if log_file:
        lines.append(f'  log:      {log_file} (environment, full config, hooks, warnings)')
    if runner.distributed:
        lines.append(f"  Distributed {'training' if mode == 'train' else 'testing'}: True, {runner.world_size} processes")
    return '\n'.join(lines)
