"""mmengine's Runner, fixed for torch >= 2.6 and for distributed training on CPU, with the run options
users expect.

mmengine 0.10.7 (the newest release) breaks in three places on this stack; the fixes live in one
Runner subclass, registered as ``visionattn.Runner`` (``runner_type`` in the configs), so that nothing
of mmengine is patched globally:

1. ``--resume`` and ``load_from``: mmengine checkpoints pickle a few of mmengine's own objects (the
   message hub's ``HistoryBuffer``, numpy scalars in its log). ``torch.load`` refuses them since torch
   2.6 (``weights_only=True``). Instead of turning safe loading off, exactly those types are allowed,
   and only while the Runner loads a checkpoint; anything else in a file is still rejected.
2. ``--launcher pytorch`` without CUDA: mmengine calls ``torch.cuda.set_device`` unconditionally and
   its DDP wrapper passes ``device_ids=[local_rank]``. On CPU the process group is started with
   ``gloo`` first and the wrapper gets ``device_ids=None``. On GPUs the stock NCCL path runs unchanged.
3. SyncBatchNorm has no CPU implementation: in CPU-distributed runs it is reverted to BatchNorm (each
   process then normalises with its own batch statistics), and the log says so.

The same Runner reads three config keys of its own (``configs/_base_/default_runtime.py``):

- ``schedule_written_for``: the training length ``param_scheduler`` was written for; when ``train_cfg``
  differs, the schedulers and intervals are rescaled to it (:mod:`visionattn.mm.schedule`);
- ``tensorboard=True``: adds mmengine's ``TensorboardVisBackend`` to the visualizer, so losses, learning rate
  and metrics are also written as TensorBoard events under ``<work_dir>/<timestamp>/vis_data``;
- ``console='quiet'`` (default) or ``'verbose'``: see :mod:`visionattn.mm.console`.
"""
from __future__ import annotations

import contextlib
import copy
import pickle
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as torch_dist
from mmengine.dist import is_distributed
from mmengine.logging import HistoryBuffer
from mmengine.model import MMDistributedDataParallel, is_model_wrapper, revert_sync_batchnorm
from mmengine.runner import BaseLoop, Runner
from torch import nn

from visionattn.errors import ConfigError
from visionattn.registry import RUNNERS

from .config import enable_tensorboard
from visionattn.console import quiet_console, release_warnings
from .schedule import fit_intervals, rescale_param_schedulers, scale_of_run

__all__ = ['VisionAttnRunner', 'mmengine_checkpoint_globals', 'mmengine_checkpoints_loadable']


def _history_buffer_method(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` when unpickling: HistoryBuffer pickles its registry of statistics
    methods as ``getattr(HistoryBuffer, 'mean')``; nothing else may be fetched that way."""
    is_buffer = owner is HistoryBuffer or isinstance(owner, HistoryBuffer)
    if not is_buffer or name.startswith('_') or not callable(getattr(HistoryBuffer, name, None)):
        raise pickle.UnpicklingError(f'checkpoint asks for getattr({owner!r}, {name!r}); only public methods '
                                     "of mmengine's HistoryBuffer may be loaded that way")
    return getattr(owner, name)


def mmengine_checkpoint_globals() -> list[Any]:
    """The non-tensor objects mmengine writes into its own checkpoints (message hub and log buffers)."""
    numpy_scalar_types = [type(np.dtype(t)) for t in ('float64', 'float32', 'int64', 'int32', 'bool')]
    return [HistoryBuffer, np.dtype, np.ndarray, np._core.multiarray.scalar, np._core.multiarray._reconstruct,
            *numpy_scalar_types, (_history_buffer_method, 'builtins.getattr'),
            (_history_buffer_method, '__builtin__.getattr')]


@contextlib.contextmanager
def mmengine_checkpoints_loadable() -> Iterator[None]:
    """Safe loading (``weights_only``) that also accepts checkpoints the mmengine Runner saved."""
    with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
        yield


def _cpu_distributed(launcher: str) -> bool:
    return launcher != 'none' and not torch.cuda.is_available()


@RUNNERS.register_module(name='Runner')
class VisionAttnRunner(Runner):
    """mmengine's Runner with safe checkpoint resume on torch >= 2.6 and CPU (gloo) distribution, schedules
    that follow the training length, a TensorBoard switch and a quiet console."""

    @classmethod
    def from_cfg(cls, cfg: Any) -> 'VisionAttnRunner':
        cfg = copy.deepcopy(cfg)
        notes = fit_intervals(cfg)
        if cfg.get('tensorboard'):
            enable_tensorboard(cfg)
        runner = super().from_cfg(cfg)
        for note in notes:
            runner.logger.info(note)
        return runner

    def build_logger(self, *args: Any, **kwargs: Any) -> Any:
        logger = super().build_logger(*args, **kwargs)
        console = self.cfg.get('console', 'quiet')
        if console not in ('quiet', 'verbose'):
            raise ConfigError(f"console must be 'quiet' or 'verbose', got {console!r}")
        if console == 'quiet':
            quiet_console(logger)
        else:
            release_warnings()
        return logger

    def build_param_scheduler(self, scheduler: Any) -> Any:
        scale = scale_of_run(self.cfg)
        if scale is not None and isinstance(self._train_loop, BaseLoop):
            key, written_for, length = scale
            scheduler, notes = rescale_param_schedulers(scheduler, written_for, length, key == 'max_epochs',
                                                        len(self.train_dataloader))
            for note in notes:
                self.logger.info(note)
        return super().build_param_scheduler(scheduler)

    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and _cpu_distributed(self.launcher) and not is_distributed():
            if self.launcher != 'pytorch':
                raise RuntimeError(f"launcher {self.launcher!r} needs CUDA; on CPU use --launcher pytorch "
                                   '(torchrun), which runs with the gloo backend')
            torch_dist.init_process_group(backend='gloo')
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: dict | None, model: nn.Module) -> nn.Module:
        if not self.distributed or is_model_wrapper(model) or not _cpu_distributed(self.launcher):
            return super().wrap_model(model_wrapper_cfg, model)
        if any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
            self.logger.warning('SyncBatchNorm has no CPU implementation: reverted to BatchNorm, so each '
                                'process normalises with its own batch statistics.')
            model = revert_sync_batchnorm(model)
        wrapper_cfg = dict(model_wrapper_cfg or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=self.cfg.get('find_unused_parameters', False)))
        wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
        from mmengine.registry import MODEL_WRAPPERS
        wrapper_type = MODEL_WRAPPERS.get(wrapper_cfg['type'])
        default_args: dict[str, Any] = dict(module=model)
        if issubclass(wrapper_type, MMDistributedDataParallel) or issubclass(
                wrapper_type, torch.nn.parallel.DistributedDataParallel):
            default_args['device_ids'] = None
        return MODEL_WRAPPERS.build(wrapper_cfg, default_args=default_args)

    def resume(self, filename: str, *args: Any, **kwargs: Any) -> None:
        with mmengine_checkpoints_loadable():
            super().resume(filename, *args, **kwargs)

    def load_checkpoint(self, filename: str, *args: Any, **kwargs: Any) -> dict:
        with mmengine_checkpoints_loadable():
            return super().load_checkpoint(filename, *args, **kwargs)

