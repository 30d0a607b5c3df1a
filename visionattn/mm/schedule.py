"""A changed training length carries the config's schedule with it.

mmengine's param schedulers state their positions (``begin``, ``end``, ``milestones``, ``T_max``, ...) in
absolute epochs or iterations, and its checkpoint and validation intervals likewise. A config written for
20k iterations and run for 2 (``--iters 2`` or ``--cfg-options train_cfg.max_iters=2``) keeps a
1k-iteration warm-up that never ends; a 30-epoch recipe run for 1 epoch stops in mmengine with "end should
be larger than begin" (its one-epoch warm-up and the cosine decay after it); a 2-iteration run with a
checkpoint every 2000 iterations saves nothing. mmengine has no notion of "the length a schedule was
written for", so this module adds one:

- :func:`note_length_override` (called by :func:`visionattn.mm.config.load_config` when an override changes
  ``train_cfg.max_iters`` / ``max_epochs``) records the written-for length in the config key
  ``schedule_written_for`` (e.g. ``dict(max_iters=20000)``; a config may also set it itself);
- the Runner (``visionattn.Runner``) then shortens the validation and checkpoint intervals that no longer
  fit (:func:`fit_intervals`) and, once the number of iterations per epoch is known, rescales every
  scheduler position proportionally (:func:`rescale_param_schedulers`), logging each change.

Positions that are no longer whole epochs become iteration positions (the scheduler then steps per
iteration, as mmengine's ``convert_to_iter_based`` does). A length too short to keep every phase of the
schedule (e.g. one iteration for a warm-up followed by a decay) stops with a message naming the shortest
length that works. Overriding ``param_scheduler`` itself turns the rescaling off: the schedule is then the
user's.
"""
from __future__ import annotations

import copy
import math
from typing import Any

from visionattn.errors import ConfigError

__all__ = ['SCHEDULE_KEY', 'train_length', 'check_train_length', 'check_length_options', 'note_length_override',
           'scale_of_run', 'fit_intervals', 'rescale_param_schedulers']

SCHEDULE_KEY = 'schedule_written_for'
_UNIT = {'max_iters': 'iterations', 'max_epochs': 'epochs'}
_POSITIONS = ('begin', 'end')
_DURATIONS = ('T_max', 'step_size', 'total_steps')  # lengths: scaled, at least 1
_POSITION_LISTS = ('milestones',)
_DURATION_LISTS = ('periods',)
_INF = 1e15  # mmengine's INF for an open end is a large int (> any real length)


def train_length(train_cfg: Any) -> tuple[str, Any] | None:
    """``('max_iters', n)`` or ``('max_epochs', n)`` of a ``train_cfg``; None when it states no length."""
    if not isinstance(train_cfg, dict):
        return None
    for key in ('max_iters', 'max_epochs'):
        if key in train_cfg:
            return key, train_cfg[key]
    return None


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_train_length(cfg: Any) -> None:
    """``train_cfg``'s length and validation interval are whole numbers >= 1 (mmengine trains zero iterations
    for ``max_iters=-3`` and exits as if it had succeeded)."""
    train_cfg = cfg.get('train_cfg')
    if not isinstance(train_cfg, dict):
        return
    if 'max_iters' in train_cfg and 'max_epochs' in train_cfg:
        raise ConfigError(f"train_cfg sets both max_iters ({train_cfg['max_iters']}) and max_epochs "
                          f"({train_cfg['max_epochs']}): a training loop counts one of them; keep one")
    for key in ('max_iters', 'max_epochs', 'val_interval', 'val_begin'):
        if key in train_cfg and not _is_positive_int(train_cfg[key]):
            what = _UNIT.get(key, 'iterations or epochs')
            raise ConfigError(f'train_cfg.{key} must be a whole number of {what}, 1 or more; got {train_cfg[key]!r}')


def check_length_options(cfg: Any, cfg_options: dict[str, Any]) -> None:
    """An override of the training length in the unit the config trains in (``--iters`` for iteration loops)."""
    train_cfg = cfg.get('train_cfg')
    current = train_length(train_cfg)
    if current is None:
        return
    for key in ('max_iters', 'max_epochs'):
        if f'train_cfg.{key}' in cfg_options and key != current[0]:
            flag = '--epochs' if current[0] == 'max_epochs' else '--iters'
            raise ConfigError(f'this config trains for {current[1]} {_UNIT[current[0]]} (train_cfg.{current[0]}), '
                              f'so its length is set with {flag} N or train_cfg.{current[0]}=N, not train_cfg.{key}')


def note_length_override(cfg: Any, written_train_cfg: dict | None, cfg_options: dict[str, Any]) -> None:
    """Record in ``cfg.schedule_written_for`` the length the schedule was written for, when ``cfg_options``
    changed it (and did not replace ``param_scheduler`` too)."""
    before, after = train_length(written_train_cfg), train_length(cfg.get('train_cfg'))
    if before is None or after is None or before == after or SCHEDULE_KEY in cfg:
        return
    if any(k == 'param_scheduler' or k.startswith('param_scheduler.') for k in cfg_options):
        return
    cfg[SCHEDULE_KEY] = {before[0]: before[1]}


def scale_of_run(cfg: Any) -> tuple[str, int, int] | None:
    """``(key, written_for, now)`` when the config trains for another length than its schedule was written for."""
    written = cfg.get(SCHEDULE_KEY)
    now = train_length(cfg.get('train_cfg'))
    if not written or now is None:
        return None
    if not isinstance(written, dict) or len(written) != 1 or now[0] not in written:
        raise ConfigError(f'{SCHEDULE_KEY} must be dict({now[0]}=N), the length param_scheduler was written for; '
                          f'got {written!r}')
    if not _is_positive_int(written[now[0]]):
        raise ConfigError(f'{SCHEDULE_KEY}.{now[0]} must be a whole number >= 1, got {written[now[0]]!r}')
    return (now[0], written[now[0]], now[1]) if written[now[0]] != now[1] else None


def fit_intervals(cfg: Any) -> list[str]:
    """Shorten the validation and checkpoint intervals that exceed a shortened run, so that it still
    validates and saves at its end; returns what changed, for the log."""
    scale = scale_of_run(cfg)
    if scale is None:
        return []
    key, written, length = scale
    notes = [f'train_cfg.{key} is {length}, the schedule of this config was written for {written}: '
             'the param schedulers are rescaled to it (details when they are built)']
    train_cfg = cfg.train_cfg
    if train_cfg.get('val_interval', 1) > length:
        notes.append(f'train_cfg.val_interval {train_cfg.val_interval} -> {length} (validate at the end of the run)')
        train_cfg.val_interval = length
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if isinstance(checkpoint, dict) and checkpoint.get('interval', 1) > length \
            and checkpoint.get('by_epoch', True) == (key == 'max_epochs'):
        notes.append(f'default_hooks.checkpoint.interval {checkpoint["interval"]} -> {length} '
                     '(save a checkpoint at the end of the run)')
        checkpoint['interval'] = length
    return notes


def _describe(scheduler: dict) -> str:
    unit = 'epochs' if scheduler.get('by_epoch', True) else 'iterations'
    parts = [f"{k}={scheduler[k]}" for k in (*_POSITIONS, *_POSITION_LISTS, *_DURATIONS, *_DURATION_LISTS)
             if k in scheduler]
    return f"{scheduler.get('type')}({', '.join(parts) or 'whole run'}; {unit})"


def _shortest_phase(scheduler_type: Any) -> int:
    """Steps a scheduler needs to do its job: mmengine's linear and constant schedulers (warm-ups) change the
    value at their first step and restore or reach the target only at a later one, so one step would leave
    the value scaled for the rest of training."""
    from mmengine.optim.scheduler.param_scheduler import ConstantParamScheduler, LinearParamScheduler
    from mmengine.registry import PARAM_SCHEDULERS
    cls = PARAM_SCHEDULERS.get(scheduler_type) if isinstance(scheduler_type, str) else scheduler_type
    return 2 if isinstance(cls, type) and issubclass(cls, (ConstantParamScheduler, LinearParamScheduler)) else 1


def _round_positions(values: list[float], pairs: list[tuple[float, float, int]]) -> dict[float, int]:
    """Whole iterations for float positions: nearest, never decreasing, and every (begin, end, shortest) phase at
    least ``shortest`` iterations long (a warm-up of 1.6 iterations becomes 2 and the phase after it starts there)."""
    mapped: dict[float, int] = {}
    previous = None
    for value in sorted(set(values)):
        rounded = round(value)
        if previous is not None:
            rounded = max(rounded, previous)
        for begin, end, shortest in pairs:
            if end == value and begin < value:
                rounded = max(rounded, mapped[begin] + shortest)
        mapped[value] = previous = rounded
    return mapped


def rescale_param_schedulers(schedulers: Any, written_for: int, length: int, loop_by_epoch: bool,
                             epoch_length: int) -> tuple[Any, list[str]]:
    """``schedulers`` (a config's ``param_scheduler``: a dict, a list, or a dict of lists per optimizer) with
    every position scaled by ``length / written_for``; returns them and a description of each change.

    ``written_for`` and ``length`` are in the loop's unit (epochs when ``loop_by_epoch``); ``epoch_length`` is
    the number of iterations per epoch. A phase that becomes shorter than it can work (a warm-up of 0.1
    iterations) is left out, as a proportional schedule would have finished it before the first iteration.
    Raises :class:`ConfigError` when the new length cannot hold the remaining phases, naming the shortest
    length that can.
    """
    if isinstance(schedulers, dict) and 'type' not in schedulers:  # one list per optimizer
        out, notes = {}, []
        for name, group in schedulers.items():
            out[name], group_notes = rescale_param_schedulers(group, written_for, length, loop_by_epoch,
                                                              epoch_length)
            notes += [f'{name}: {n}' for n in group_notes]
        return out, notes
    single = isinstance(schedulers, dict)
    items = [schedulers] if single else list(schedulers)
    if not all(isinstance(s, dict) for s in items):
        return schedulers, []  # already built scheduler objects: nothing to rescale
    unit = 'epochs' if loop_by_epoch else 'iterations'
    scaled, too_late = _rescaled(items, written_for, length, loop_by_epoch, epoch_length)
    if too_late:
        low, high = length + 1, max(written_for, length + 1)  # the written-for length always fits
        while low < high:  # the shortest length at which every phase starts before the end
            middle = (low + high) // 2
            if _rescaled(items, written_for, middle, loop_by_epoch, epoch_length)[1]:
                low = middle + 1
            else:
                high = middle
        raise ConfigError(
            f'{length} {unit} is too short for the schedule of this config (written for {written_for} {unit}): '
            f'{", ".join(_describe(s) for s in too_late)} would start after the end of training. Train for at '
            f'least {low} {unit}, or give the short run its own param_scheduler in a config')
    notes = [f'param_scheduler rescaled from {written_for} to {length} {unit}'
             + (f' ({epoch_length} iterations per epoch)' if loop_by_epoch else '') + ':']
    notes += [f'  {_describe(dict(o))} -> ' + (_describe(s) if s is not None else 'left out: shorter than a step')
              for o, s in zip(items, scaled)]
    kept = [s for s in scaled if s is not None]
    if single:
        return (kept[0] if kept else []), notes
    return kept, notes


def _scale_values(scheduler: dict, factor: float) -> None:
    for k in (*_POSITIONS, *_DURATIONS):
        if k in scheduler and scheduler[k] < _INF:
            scheduler[k] = scheduler[k] * factor
    for k in (*_POSITION_LISTS, *_DURATION_LISTS):
        if k in scheduler:
            scheduler[k] = [v * factor for v in scheduler[k]]


def _values(scheduler: dict) -> list[float]:
    values = [scheduler[k] for k in (*_POSITIONS, *_DURATIONS) if k in scheduler and scheduler[k] < _INF]
    return values + [v for k in (*_POSITION_LISTS, *_DURATION_LISTS) for v in scheduler.get(k, ())]


def _span(scheduler: dict) -> float | None:
    end = scheduler.get('end')
    return None if end is None or end >= _INF else end - scheduler.get('begin', 0)


def _rescaled(items: list[dict], written_for: int, length: int, loop_by_epoch: bool,
              epoch_length: int) -> tuple[list[dict | None], list[dict]]:
    """The rescaled schedulers (None for a phase left out), and those that would start after training ends."""
    scale = length / written_for
    total_iters = length * epoch_length if loop_by_epoch else length
    scaled: list[dict | None] = []
    in_iters: list[tuple[dict, int]] = []
    for original in items:
        scheduler = copy.deepcopy(dict(original))
        shortest = _shortest_phase(scheduler.get('type'))
        if scheduler.get('by_epoch', True):
            _scale_values(scheduler, scale)
            span = _span(scheduler)
            if all(math.isclose(v, round(v)) for v in _values(scheduler)) and (span is None or span >= shortest):
                for k in (*_POSITIONS, *_DURATIONS):  # whole epochs: keep stepping per epoch
                    if k in scheduler and scheduler[k] < _INF:
                        scheduler[k] = round(scheduler[k])
                for k in (*_POSITION_LISTS, *_DURATION_LISTS):
                    if k in scheduler:
                        scheduler[k] = [round(v) for v in scheduler[k]]
                scaled.append(scheduler)
                continue
            scheduler['by_epoch'] = False  # positions between epochs: step per iteration
            scheduler.pop('convert_to_iter_based', None)
            _scale_values(scheduler, epoch_length)
        else:
            _scale_values(scheduler, scale)
        span = _span(scheduler)
        if span is not None and span < shortest - 0.5:  # would round below what it needs
            scaled.append(None)
            continue
        scaled.append(scheduler)
        in_iters.append((scheduler, shortest))

    pairs = [(s.get('begin', 0), s['end'], shortest) for s, shortest in in_iters if _span(s) is not None]
    mapped = _round_positions([s.get('begin', 0) for s, _ in in_iters] + [end for _, end, _ in pairs], pairs)
    for s, _ in in_iters:
        for k in _POSITIONS:
            if k in s and s[k] < _INF:
                s[k] = mapped[s[k]]
        for k in _DURATIONS:
            if k in s:
                s[k] = max(1, round(s[k]))
        for k in _POSITION_LISTS:
            if k in s:
                s[k] = [round(v) for v in s[k]]
        for k in _DURATION_LISTS:
            if k in s:
                s[k] = [max(1, round(v)) for v in s[k]]
    too_late = [s for s in scaled
                if s is not None and s.get('begin', 0) >= (length if s.get('by_epoch', True) else total_iters)]
    return scaled, too_late
