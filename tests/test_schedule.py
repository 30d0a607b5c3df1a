"""A changed training length (--iters/--epochs, train_cfg.max_*) carries the param schedulers and intervals."""
from __future__ import annotations

import math

import pytest
import torch
from mmengine.registry import PARAM_SCHEDULERS

from conftest import REPO_ROOT
from visionattn.errors import ConfigError
from visionattn.mm.config import check_model, load_config
from visionattn.mm.schedule import (SCHEDULE_KEY, fit_intervals, note_length_override, rescale_param_schedulers,
                                   scale_of_run, train_length)

SHIPPED = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)
EPOCH_LENGTH = 2  # iterations per epoch assumed for epoch-based configs (the real one comes from the dataloader)


def learning_rates(schedulers: list[dict], by_epoch: bool, length: int, epoch_length: int) -> list[float]:
    """Build ``schedulers`` as the Runner does and step them as mmengine's ParamSchedulerHook does; the
    learning rate of every training iteration."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    total_iters = length * epoch_length if by_epoch else length
    built = []
    for cfg in schedulers:
        cfg = dict(cfg)
        cfg.setdefault('end', length if cfg.get('by_epoch', True) else total_iters)  # the Runner's default end
        built.append(PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optimizer, epoch_length=epoch_length)))
    lrs = []
    for _ in range(length if by_epoch else 1):
        for _ in range(epoch_length if by_epoch else length):
            lrs.append(optimizer.param_groups[0]['lr'])
            optimizer.step()
            for s in built:
                if not s.by_epoch:
                    s.step()
        for s in built:
            if s.by_epoch:
                s.step()
    return lrs


@pytest.mark.parametrize('config', SHIPPED)
def test_every_shipped_config_runs_a_one_epoch_or_two_iteration_schedule(config):
    """Every shipped config parses, its model options and channels check out, and shortened to 1 epoch or
    2 iterations, its rescaled schedulers build and give a finite learning rate throughout (a decay to 0, like
    mmseg's PolyLR, reaches it at the last iteration)."""
    cfg = load_config(str(REPO_ROOT / config))
    assert cfg.get('custom_imports', {}).get('imports') == ['visionattn.mm']
    check_model(cfg)
    key, written = train_length(cfg.train_cfg)
    short = 1 if key == 'max_epochs' else 2
    override = {f'train_cfg.{key}': short}  # what load_config does with it (one load per config keeps this fast)
    as_written = dict(cfg.train_cfg)
    cfg.merge_from_dict(override)
    note_length_override(cfg, as_written, override)
    assert cfg[SCHEDULE_KEY] == {key: written}
    notes = fit_intervals(cfg)
    assert cfg.train_cfg.get('val_interval', 1) <= short and notes
    _, written_for, length = scale_of_run(cfg)
    schedulers, notes = rescale_param_schedulers(cfg.param_scheduler, written_for, length, key == 'max_epochs',
                                                 EPOCH_LENGTH)
    assert notes[0].startswith(f'param_scheduler rescaled from {written_for} to {short}')
    lrs = learning_rates(schedulers if isinstance(schedulers, list) else [schedulers], key == 'max_epochs', short,
                         EPOCH_LENGTH)
    assert lrs and lrs[0] > 0 and all(math.isfinite(lr) and lr >= 0 for lr in lrs), lrs


def test_the_eurosat_recipe_shortened_to_one_epoch_decays_from_the_first_iteration():
    """The reported case: 30 epochs (a one-epoch warm-up, cosine after it) run for 1 epoch of 7 iterations: the
    warm-up scales to 0.23 iterations, so it is over before the first one, and the cosine decay spans the run."""
    cfg = load_config(str(REPO_ROOT / 'configs/remote_sensing/resnet50_eurosat_ms.py'), {'train_cfg.max_epochs': 1})
    schedulers, notes = rescale_param_schedulers(cfg.param_scheduler, 30, 1, True, 7)
    assert schedulers == [dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=0)]  # end: the run's
    assert notes[1:] == ['  LinearLR(end=1; epochs) -> left out: shorter than a step',
                         '  CosineAnnealingLR(begin=1; epochs) -> CosineAnnealingLR(begin=0; iterations)']
    lrs = learning_rates(schedulers, True, 1, 7)
    assert lrs[0] == pytest.approx(0.1) and lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.01
    # at 15 epochs the one-epoch warm-up is half an epoch: 4 iterations, reaching the full rate, then cosine
    schedulers, _ = rescale_param_schedulers(cfg.param_scheduler, 30, 15, True, 7)
    assert [(s['by_epoch'], s.get('begin', 0), s.get('end')) for s in schedulers] == [(False, 0, 4), (False, 4, None)]
    lrs = learning_rates(schedulers, True, 15, 7)
    assert lrs[0] == pytest.approx(0.1 * 1e-2) and max(lrs) == pytest.approx(0.1) == lrs[3]


def test_whole_epochs_stay_epochs_and_iterations_scale_with_the_run():
    schedulers = [dict(type='LinearLR', by_epoch=False, begin=0, end=500),
                  dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11])]
    longer, _ = rescale_param_schedulers(schedulers, 12, 24, True, 100)
    assert longer == [dict(type='LinearLR', by_epoch=False, begin=0, end=1000),
                      dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22])]
    shorter, _ = rescale_param_schedulers(schedulers, 12, 1, True, 6)  # milestones between epochs
    assert shorter[1] == dict(type='MultiStepLR', begin=0, end=6, by_epoch=False, milestones=[4, 6])
    assert shorter[0]['end'] == 42  # 500 of 12 epochs -> 41.7 iterations of one epoch
    # a per-epoch warm-up of one epoch would never reach the full rate (mmengine's LinearLR needs 2 steps)
    warm_up, _ = rescale_param_schedulers([dict(type='LinearLR', by_epoch=True, end=5)], 10, 2, True, 6)
    assert warm_up == [dict(type='LinearLR', by_epoch=False, end=6)]


def test_warm_up_shorter_than_a_step_is_left_out_and_phases_keep_their_order():
    schedulers = [dict(type='LinearLR', by_epoch=False, begin=0, end=1000),
                  dict(type='PolyLR', by_epoch=False, begin=1000, end=20000)]
    short, _ = rescale_param_schedulers(schedulers, 20000, 2, False, 1)
    assert short == [dict(type='PolyLR', by_epoch=False, begin=0, end=2)]
    short, _ = rescale_param_schedulers(schedulers, 20000, 40, False, 1)  # warm-up 2 iterations, then decay
    assert [(s['begin'], s['end']) for s in short] == [(0, 2), (2, 40)]
    halves = [dict(type='PolyLR', by_epoch=False, begin=0, end=10), dict(type='CosineAnnealingLR', by_epoch=False,
                                                                          begin=10, end=20)]
    with pytest.raises(ConfigError, match=r'1 iterations is too short.*CosineAnnealingLR\(begin=1, end=2; '
                                          r'iterations\) would start after the end of training. Train for at least 2'):
        rescale_param_schedulers(halves, 20, 1, False, 1)


def test_one_list_of_schedulers_per_optimizer():
    schedulers = {'generator': [dict(type='PolyLR', by_epoch=False, end=100)],
                  'discriminator': [dict(type='LinearLR', by_epoch=False, end=20)]}
    short, notes = rescale_param_schedulers(schedulers, 100, 10, False, 1)
    assert short == {'generator': [dict(type='PolyLR', by_epoch=False, end=10)],
                     'discriminator': [dict(type='LinearLR', by_epoch=False, end=2)]}
    assert notes[0].startswith('generator: param_scheduler rescaled from 100 to 10 iterations')


def test_only_a_changed_length_is_recorded_and_an_own_schedule_turns_it_off():
    seg = str(REPO_ROOT / 'configs/demo/upernet_resnet18_ade20k_demo.py')
    assert SCHEDULE_KEY not in load_config(seg)
    assert SCHEDULE_KEY not in load_config(seg, {'train_cfg.max_iters': 300})  # the length it was written for
    assert SCHEDULE_KEY not in load_config(seg, {'train_cfg.max_iters': 3, 'param_scheduler.0.end': 3})
    cfg = load_config(seg, {'train_cfg.max_iters': 3})
    assert cfg[SCHEDULE_KEY] == {'max_iters': 300} and scale_of_run(cfg) == ('max_iters', 300, 3)
    assert fit_intervals(cfg)[1:] == ['train_cfg.val_interval 300 -> 3 (validate at the end of the run)',
                                      'default_hooks.checkpoint.interval 150 -> 3 (save a checkpoint at the end of '
                                      'the run)']
    assert cfg.train_cfg.val_interval == 3 and cfg.default_hooks.checkpoint.interval == 3


@pytest.mark.parametrize('options, message', [
    ({'train_cfg.max_iters': -3}, r'train_cfg.max_iters must be a whole number of iterations, 1 or more; got -3'),
    ({'train_cfg.max_iters': 0}, r'got 0'),
    ({'train_cfg.max_iters': 2.5}, r'got 2.5'),
    ({'train_cfg.val_interval': 0}, r'train_cfg.val_interval must be a whole number'),
    ({'train_cfg.max_epochs': 1}, r'this config trains for 300 iterations \(train_cfg.max_iters\), so its length is '
                                  r'set with --iters N or train_cfg.max_iters=N, not train_cfg.max_epochs'),
])
def test_lengths_that_cannot_run_are_refused_before_anything_is_built(options, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(REPO_ROOT / 'configs/demo/upernet_resnet18_ade20k_demo.py'), options)
