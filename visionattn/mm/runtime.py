"""mmengine's Runner, fixed for torch >= 2.6, crash-safe checkpoints and distributed training on CPU, with
the run options users expect.

mmengine 0.10.7 (the newest release) breaks or loses data in several places on this stack; the fixes live
in one Runner subclass, registered as ``visionattn.Runner`` (``runner_type`` in the configs, which the train
and test tools of mmseg, mmdet and mmpretrain honour too), so that nothing of mmengine is patched globally:

1. Safe loading: checkpoints are read with :func:`visionattn.checkpoint.read_checkpoint` (``weights_only``;
   a damaged or unsafe file is one clear error) and load strictly by default: a checkpoint of another model
   or with other shapes stops with a short report (``load_strict = False`` in the config, or ``--non-strict``,
   loads what fits and logs the report). The checkpoints this Runner writes hold only tensors and plain
   Python values (:class:`PlainCheckpointContentHook`): mmengine's log buffers are stored as lists and read
   back on resume, so plain ``torch.load``, and mmengine's own Runner in stock OpenMMLab tools, load them
   safely too. Older files with mmengine's log objects still load
   (:func:`~visionattn.checkpoint.mmengine_types_allowed`).
2. Crash-safe saving: a checkpoint is written to a temporary file and renamed into place once complete
   (:func:`~visionattn.checkpoint.write_atomically`), and mmengine's ``CheckpointHook`` is replaced by
   :class:`CheckpointHook`, which deletes outdated checkpoints (``max_keep_ckpts``, the previous best) only
   after the new one is saved. A kill at any moment leaves every complete checkpoint in place, and
   ``last_checkpoint`` never names a partial file.
3. ``--resume auto`` checks the newest checkpoint (an empty or missing ``last_checkpoint`` included) and
   falls back to the newest complete one, saying so; abandoned temporary files are removed.
4. A run that loads a whole checkpoint strictly (resume, ``load_from``) skips ``init_weights()``: every
   weight comes from the checkpoint, so no pretrained weights are fetched (offline machines).
5. ``--launcher pytorch`` without CUDA: mmengine calls ``torch.cuda.set_device`` unconditionally and its DDP
   wrapper passes ``device_ids=[local_rank]``. On CPU the process group is started with ``gloo`` first and
   the wrapper gets ``device_ids=None``. On GPUs the stock NCCL path runs unchanged.
6. SyncBatchNorm has no CPU implementation: in CPU-distributed runs it is reverted to BatchNorm (each process
   then normalises with its own batch statistics), and the log says so.

In CPU-distributed runs the gloo process group gets a collective timeout (``env_cfg.dist_cfg.timeout``,
``--dist-timeout``; 300 s by default), and training, validation and testing end with a message naming
the rank that did not answer when one dies or hangs (:mod:`visionattn.mm.distributed`).

The same Runner reads three config keys of its own (``configs/_base_/default_runtime.py``):

- ``schedule_written_for``: the training length ``param_scheduler`` was written for; when ``train_cfg``
  differs, the schedulers and intervals are rescaled to it (:mod:`visionattn.mm.schedule`);
- ``tensorboard=True``: adds mmengine's ``TensorboardVisBackend`` to the visualizer, so losses, learning rate
  and metrics are also written as TensorBoard events under ``<work_dir>/<timestamp>/vis_data``;
- ``console='quiet'`` (default) or ``'verbose'``: see :mod:`visionattn.console`.
"""
from __future__ import annotations

import contextlib
import copy
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from mmengine.dist import is_distributed, master_only
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook as _MMEngineCheckpointHook
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import MMDistributedDataParallel, is_model_wrapper, revert_sync_batchnorm
from mmengine.runner import BaseLoop, Runner
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from visionattn.checkpoint import (abandoned_partial_files, describe_checkpoint, load_state_dict_checked,
                                   mmengine_types_allowed, read_checkpoint, state_dict_from, verify_checkpoint,
                                   write_atomically)
from visionattn.console import quiet_console, release_warnings
from visionattn.errors import CheckpointError, ConfigError, UserError
from visionattn.registry import HOOKS, RUNNERS

from .config import enable_tensorboard
from .distributed import collective_timeout_s, init_gloo_process_group, unresponsive_peers_named
from .schedule import fit_intervals, rescale_param_schedulers, scale_of_run

__all__ = ['VisionAttnRunner', 'CheckpointHook', 'PlainCheckpointContentHook']

_HISTORY_BUFFER = 'mmengine.logging.HistoryBuffer'
_NON_STRICT = '--non-strict (load_strict=False in the config)'


# ---------------------------------------------------------------------------------------------
# Checkpoint content that plain safe loading accepts
# ---------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """``value`` with mmengine's log buffers and numpy values replaced by plain Python ones; containers without
    such values are returned as they are (a state dict keeps its ``_metadata``)."""
    if isinstance(value, HistoryBuffer):
        log_history, count_history = value.data
        return dict(kind=_HISTORY_BUFFER, log_history=log_history.tolist(), count_history=count_history.tolist(),
                    max_length=value.max_length)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        items = [(k, v, _plain(v)) for k, v in value.items()]
        if all(new is old for _, old, new in items):
            return value
        return (OrderedDict if isinstance(value, OrderedDict) else dict)((k, new) for k, _, new in items)
    if type(value) in (list, tuple):
        converted = [_plain(v) for v in value]
        return value if all(new is old for new, old in zip(converted, value)) else type(value)(converted)
    return value


@HOOKS.register_module()
class PlainCheckpointContentHook(Hook):
    """Saved checkpoints hold tensors and plain Python values only; on loading, the log buffers come back.

    mmengine pickles its message hub's ``HistoryBuffer`` objects and numpy scalars into every checkpoint, which
    ``torch.load(weights_only=True)`` refuses; mmengine's own Runner (used by stock tools such as mmseg's
    ``tools/test.py``) cannot read them safely. The Runner registers this hook itself.
    """

    priority = 'LOWEST'  # after every other hook has added what it saves

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        for key in checkpoint:
            checkpoint[key] = _plain(checkpoint[key])

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        scalars = checkpoint.get('message_hub', {}).get('log_scalars', {}) if isinstance(checkpoint, dict) else {}
        for key, value in scalars.items():
            if isinstance(value, dict) and value.get('kind') == _HISTORY_BUFFER:
                scalars[key] = HistoryBuffer(value['log_history'], value['count_history'], value['max_length'])


class _DeferredRemovals:
    """A file backend whose ``remove``/``rmtree`` wait for :meth:`commit`; everything else passes through."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._pending: list[tuple[str, str]] = []

    def remove(self, path: str) -> None:
        self._pending.append(('remove', path))

    def rmtree(self, path: str) -> None:
        self._pending.append(('rmtree', path))

    def commit(self, keep: set[str]) -> None:
        """Carry out the deferred removals, except of the files in ``keep`` (just written under that name)."""
        pending, self._pending = self._pending, []
        for operation, path in pending:
            if path not in keep:
                getattr(self._backend, operation)(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


@HOOKS.register_module()
class CheckpointHook(_MMEngineCheckpointHook):
    """mmengine's CheckpointHook, deleting outdated checkpoints only once the new one is saved.

    mmengine removes the oldest checkpoint (``max_keep_ckpts``) and the previous best before it writes the new
    one, so a kill in between leaves fewer checkpoints than promised (none, with ``max_keep_ckpts=1``). The
    project's Runner uses this hook wherever a config names mmengine's.
    """

    def before_train(self, runner: Runner) -> None:
        super().before_train(runner)
        self.file_backend = _DeferredRemovals(self.file_backend)

    def _saved(self) -> set[str]:
        best = [getattr(self, 'best_ckpt_path', None), *getattr(self, 'best_ckpt_path_dict', {}).values()]
        return {str(p) for p in [getattr(self, 'last_ckpt', None), *best] if p}

    def _save_checkpoint_with_step(self, runner: Runner, step: int, meta: dict) -> None:
        super()._save_checkpoint_with_step(runner, step, meta)
        self.file_backend.commit(self._saved())

    def _save_best_checkpoint(self, runner: Runner, metrics: dict) -> None:
        super()._save_best_checkpoint(runner, metrics)
        self.file_backend.commit(self._saved())


def _is_mmengine_checkpoint_hook(hook_type: Any) -> bool:
    if isinstance(hook_type, str):
        from mmengine.registry import HOOKS as ROOT_HOOKS
        with ROOT_HOOKS.switch_scope_and_registry(None) as registry:
            try:
                hook_type = registry.get(hook_type)
            except (KeyError, ImportError):
                return False
    return hook_type is _MMEngineCheckpointHook


# ---------------------------------------------------------------------------------------------
# The Runner
# ---------------------------------------------------------------------------------------------
def _cpu_distributed(launcher: str) -> bool:
    return launcher != 'none' and not torch.cuda.is_available()


_REGULAR_CHECKPOINT = re.compile(r'^(epoch|iter)_(\d+)\.pth$')  # CheckpointHook's default names


@RUNNERS.register_module(name='Runner')
class VisionAttnRunner(Runner):
    """mmengine's Runner with safe, strict loading, crash-safe saving and resume, CPU (gloo) distribution,
    schedules that follow the training length, a TensorBoard switch and a quiet console."""

    _peer_check_group: Any = None  # the gloo diagnosis group of CPU-distributed runs

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_hook(PlainCheckpointContentHook())

    @property
    def _load_strict(self) -> bool:
        return bool(self.cfg.get('load_strict', True))

    # -- run options ------------------------------------------------------------------------
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

    # -- environment ----------------------------------------------------------------------
    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and _cpu_distributed(self.launcher) and not is_distributed():
            if self.launcher != 'pytorch':
                raise RuntimeError(f"launcher {self.launcher!r} needs CUDA; on CPU use --launcher pytorch "
                                   '(torchrun), which runs with the gloo backend')
            self._peer_check_group = init_gloo_process_group(env_cfg.get('dist_cfg'))
        super().setup_env(env_cfg)

    def _peers_named(self) -> contextlib.AbstractContextManager:
        return unresponsive_peers_named(self._peer_check_group, collective_timeout_s(
            (self.cfg.get('env_cfg') or {}).get('dist_cfg')))

    def train(self) -> nn.Module:
        with self._peers_named():
            return super().train()

    def val(self) -> dict:
        with self._peers_named():
            return super().val()

    def test(self) -> dict:
        with self._peers_named():
            return super().test()

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

    # -- saving ---------------------------------------------------------------------------
    def register_default_hooks(self, hooks: Optional[dict] = None) -> None:
        hooks = dict(hooks or {})
        checkpoint = hooks.get('checkpoint', dict(type='CheckpointHook', interval=1))  # mmengine's default
        if isinstance(checkpoint, dict) and _is_mmengine_checkpoint_hook(checkpoint.get('type')):
            hooks['checkpoint'] = dict(checkpoint, type=CheckpointHook)
        super().register_default_hooks(hooks)

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, file_client_args: Optional[dict] = None,
                        save_optimizer: bool = True, save_param_scheduler: bool = True, meta: Optional[dict] = None,
                        by_epoch: bool = True, backend_args: Optional[dict] = None) -> None:
        """mmengine's save, into a temporary file that is renamed to ``filename`` once complete."""
        options = dict(save_optimizer=save_optimizer, save_param_scheduler=save_param_scheduler, meta=meta,
                       by_epoch=by_epoch, backend_args=backend_args)
        local = file_client_args is None and isinstance(get_file_backend(out_dir, backend_args=backend_args),
                                                        LocalBackend)
        if not local:  # object stores replace whole objects already
            return super().save_checkpoint(out_dir, filename, file_client_args, **options)
        with write_atomically(Path(out_dir) / filename) as partial:
            super().save_checkpoint(str(partial.parent), partial.name, None, **options)

    # -- loading --------------------------------------------------------------------------
    def _read(self, filename: str, map_location: Any) -> Any:
        if '://' in str(filename):  # URLs and mmengine's model-zoo schemes: mmengine fetches, safely
            with mmengine_types_allowed():
                return CheckpointLoader.load_checkpoint(filename, map_location, self.logger)
        return read_checkpoint(filename, map_location=map_location)

    def _model_description(self, model: nn.Module) -> str:
        config = Path(self.cfg.filename).stem if self.cfg.filename else 'this config'
        return f'the {type(model).__name__} of {config}'

    def load_checkpoint(self, filename: str, map_location: Any = 'cpu', strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]) -> dict:  # noqa: B006 (mmengine's signature)
        """Read ``filename`` safely and load it into the model, strictly unless the config says otherwise."""
        checkpoint = self._read(filename, map_location)
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get('meta'), dict):
            # mmengine's resume executes meta['config'] (old mmcv checkpoints) as Python: not from a file we load
            checkpoint['meta'].pop('config', None)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        state = state_dict_from(checkpoint, str(filename))
        for pattern, replacement in revise_keys:
            state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
        load_state_dict_checked(model, state, strict=strict or self._load_strict, source=str(filename),
                                model_name=self._model_description(model),
                                looks_like=describe_checkpoint(checkpoint, filename), non_strict_option=_NON_STRICT,
                                warn=self.logger.warning)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    # -- resuming -------------------------------------------------------------------------
    def _checkpoint_to_resume(self) -> Optional[str]:
        """``--resume auto``: the newest complete checkpoint of the work dir (None: start from the beginning).

        Candidates: the file ``last_checkpoint`` names, then the CheckpointHook's ``epoch_N.pth``/``iter_N.pth``
        of its folder, newest first. Each is checked (:func:`visionattn.checkpoint.verify_checkpoint`); a
        damaged one is skipped with a warning. Abandoned temporary files of interrupted saves are removed.
        """
        if hasattr(self, '_resume_choice'):
            return self._resume_choice
        pointer = Path(self.work_dir) / 'last_checkpoint'
        named = pointer.read_text().strip() if pointer.is_file() else ''
        if pointer.is_file() and not named:
            self.logger.warning(f'{pointer} is empty (a save was interrupted); looking for checkpoints in '
                                f'{self.work_dir} instead.')
        folder = Path(named).parent if named else Path(self.work_dir)
        for partial in abandoned_partial_files(folder):
            self.logger.warning(f'Removing {partial}: the unfinished file of a save that was interrupted.')
            partial.unlink()
        regular = [p for p in folder.glob('*.pth') if _REGULAR_CHECKPOINT.match(p.name)]
        regular.sort(key=lambda p: (int(_REGULAR_CHECKPOINT.match(p.name)[2]), p.stat().st_mtime), reverse=True)
        candidates = list(dict.fromkeys([*([named] if named else []), *map(str, regular)]))
        skipped = []
        for candidate in candidates:
            try:
                verify_checkpoint(candidate)
            except UserError as err:
                skipped.append(f'{candidate} ({err})')
                continue
            if skipped:
                self.logger.warning(f'--resume: the newest checkpoint cannot be used: {"; ".join(skipped)}. '
                                    f'Resuming from {candidate}, the newest complete checkpoint, instead.')
            self._resume_choice = candidate
            return candidate
        if skipped:
            raise CheckpointError(f'--resume: no checkpoint in {folder} can be read: {"; ".join(skipped)}. Start '
                                  'without --resume (into a new work dir), or resume from a copy with --resume PATH.')
        self._resume_choice = None
        return None

    def load_or_resume(self) -> None:
        if self._has_loaded:
            return
        if not (self._resume and self._load_from is None):
            return super().load_or_resume()
        checkpoint = self._checkpoint_to_resume()
        if checkpoint is None:
            self.logger.info(f'--resume: no checkpoint in {self.work_dir} yet; training starts from the beginning.')
            return
        self.logger.info(f'Auto resumed from the latest checkpoint {checkpoint}.')
        self.resume(checkpoint)
        self._has_loaded = True

    def _init_model_weights(self) -> None:
        """Skipped when a whole checkpoint is loaded strictly next: no pretrained weights are fetched for nothing."""
        whole = self._load_from if not self._resume else self._load_from or self._checkpoint_to_resume()
        if whole is not None and self._load_strict:
            self.logger.info(f'init_weights() skipped: every weight comes from {whole} (loaded strictly), so no '
                             'pretrained weights are fetched.')
            return
        super()._init_model_weights()
