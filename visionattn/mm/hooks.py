"""Hooks of the runs: the latest metrics in ``<work_dir>/metrics_<val|test>.json``, and the bad samples
``--skip-bad-samples`` left out, logged one by one and counted into that file.

mmengine logs metrics and stores them per run under ``<work_dir>/<timestamp>/vis_data``; scripts and
users want one stable file per work dir to read the last result from, and to see there when a result
was computed on fewer images than the split holds.
"""
from __future__ import annotations

import json
import os
from typing import Any

from mmengine.dist import all_gather_object, is_main_process
from mmengine.hooks import Hook

from visionattn.registry import HOOKS

from .validation import SKIPPED_KEY

#: Message-hub key of the skipped-sample counts (summed over processes) that MetricsJsonHook writes out.
SKIPPED_COUNTS_INFO = 'skipped_bad_samples'


def _jsonable(value: Any) -> Any:
    if hasattr(value, 'tolist'):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@HOOKS.register_module()
class MetricsJsonHook(Hook):
    """After each validation / test, dump its metrics (``{}`` when the evaluator had nothing to score) and,
    with ``--skip-bad-samples``, how many bad files were left out (``skipped_bad_samples``: per loader, over
    all processes; see :class:`SkippedSamplesHook`)."""

    priority = 'VERY_LOW'

    def _dump(self, runner, mode: str, metrics: dict[str, Any] | None) -> None:
        if metrics is None or not is_main_process():
            return
        record = dict(metrics=_jsonable(metrics), iter=runner.iter, epoch=runner.epoch,
                      checkpoint=runner.cfg.get('load_from'), config=runner.cfg.filename)
        skipped = runner.message_hub.get_info(SKIPPED_COUNTS_INFO)
        if skipped is not None:
            record[SKIPPED_COUNTS_INFO] = skipped
        path = os.path.join(runner.work_dir, f'metrics_{mode}.json')
        with open(path, 'w') as f:
            json.dump(record, f, indent=1)
        runner.logger.info(f'{mode} metrics written to {path}')

    def after_val_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        self._dump(runner, 'val', metrics)

    def after_test_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        self._dump(runner, 'test', metrics)


@HOOKS.register_module()
class SkippedSamplesHook(Hook):
    """Take the messages of skipped bad samples out of each batch, log each file once, and count the files.

    Added by :func:`visionattn.mm.validation.enable_bad_sample_skipping`. Counts are of distinct files (a bad
    training file drawn again is not counted again): ``train`` over the run, ``val`` / ``test`` per
    evaluation. After each evaluation they are gathered over the processes and put in the message hub
    (``skipped_bad_samples``) for :class:`MetricsJsonHook`, which runs after this hook.
    """

    priority = 'LOW'

    def __init__(self) -> None:
        self.skipped: dict[str, set[str]] = {'train': set(), 'val': set(), 'test': set()}

    def _take(self, runner, mode: str, data_batch: Any) -> None:
        if not isinstance(data_batch, dict):
            return
        for message in data_batch.pop(SKIPPED_KEY, ()):
            if message not in self.skipped[mode]:
                self.skipped[mode].add(message)
                runner.logger.warning(f'skipped a bad {mode} sample ({len(self.skipped[mode])} so far): {message}')

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._take(runner, 'train', data_batch)

    def before_val_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._take(runner, 'val', data_batch)

    def before_test_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._take(runner, 'test', data_batch)

    def before_val_epoch(self, runner) -> None:
        self.skipped['val'] = set()

    def before_test_epoch(self, runner) -> None:
        self.skipped['test'] = set()

    def _publish(self, runner, modes: tuple[str, ...]) -> None:
        gathered = all_gather_object({mode: self.skipped[mode] for mode in modes})  # [ours] in one process
        counts = {mode: len(set().union(*(part[mode] for part in gathered))) for mode in modes}
        runner.message_hub.update_info(SKIPPED_COUNTS_INFO, counts)
        if any(counts.values()):
            runner.logger.warning('bad files skipped (all processes): '
                                  + ', '.join(f'{mode} {n}' for mode, n in counts.items()) + '; each is logged above')

    def after_val_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        self._publish(runner, ('train', 'val'))

    def after_test_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        self._publish(runner, ('test',))
