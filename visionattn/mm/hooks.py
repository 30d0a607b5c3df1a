"""Write the latest evaluation metrics to ``<work_dir>/metrics_<val|test>.json``.

mmengine logs metrics and stores them per run under ``<work_dir>/<timestamp>/vis_data``; scripts and
users want one stable file per work dir to read the last result from.
"""
from __future__ import annotations

import json
import os
from typing import Any

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from visionattn.registry import HOOKS


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
    """After each validation / test, dump its metrics (``{}`` when the evaluator had nothing to score)."""

    priority = 'VERY_LOW'

    def _dump(self, runner, mode: str, metrics: dict[str, Any] | None) -> None:
        if metrics is None or not is_main_process():
            return
        record = dict(metrics=_jsonable(metrics), iter=runner.iter, epoch=runner.epoch,
                      checkpoint=runner.cfg.get('load_from'), config=runner.cfg.filename)
        path = os.path.join(runner.work_dir, f'metrics_{mode}.json')
        with open(path, 'w') as f:
            json.dump(record, f, indent=1)
        runner.logger.info(f'{mode} metrics written to {path}')

    def after_val_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        self._dump(runner, 'val', metrics)

    def after_test_epoch(self, runner, metrics: dict[str, Any] | None = None) -> None:
        self._dump(runner, 'test', metrics)
