"""Train a classification (mmpretrain), detection (mmdet) or segmentation (mmseg) config.

    python tools/train.py configs/biformer_ade20k.py [--work-dir DIR] [--resume [auto|PATH]] [--amp]
        [--cfg-options key=value ...] [--data-root DIR] [--seed N] [--deterministic] [--skip-bad-samples]
        [--non-strict] [--launcher {none,pytorch}] [--dist-timeout SECONDS] [--debug]

``--resume`` (auto) continues from the newest complete checkpoint of the work dir; checkpoints are written
atomically, so a run killed while saving loses nothing. ``load_from`` and ``--resume`` checkpoints must fit
the model (``--non-strict`` loads what fits and names the rest).

Distributed: ``bash tools/dist_train.sh CONFIG GPUS [args]`` (torchrun; NCCL on GPUs, gloo on CPU). A process
that dies ends the job; one that stops answering ends it after ``--dist-timeout`` (default 300 s on CPU),
with a message naming its rank.
"""
from __future__ import annotations

import argparse
import logging
import os

from . import cli_main
from ..checkpoint import verify_checkpoint
from ..errors import ConfigError
from .run_options import add_run_arguments, load_run_config


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='auto|PATH',
                        help='resume from the latest checkpoint in the work dir (no value or "auto") '
                        'or from the given checkpoint')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--seed', type=int, default=None, help='random seed')
    parser.add_argument('--deterministic', action='store_true', help='deterministic cuDNN / algorithms')
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str]) -> None:
    args = parse_args(argv)
    from mmengine.logging import print_log

    from visionattn.mm.config import build_runner

    cfg = load_run_config(args, ('train_dataloader', 'val_dataloader'))
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print_log('AMP is already enabled in the config.', logger='current', level=logging.WARNING)
        elif wrapper != 'OptimWrapper':
            raise ConfigError(f'--amp needs optim_wrapper.type OptimWrapper, the config has {wrapper}')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        verify_checkpoint(args.resume)  # a missing, empty or truncated file stops before anything is built
        cfg.resume, cfg.load_from = True, args.resume
    if args.seed is not None or args.deterministic:
        cfg.randomness = dict(cfg.get('randomness') or {})
        if args.seed is not None:
            cfg.randomness['seed'] = args.seed
        cfg.randomness['deterministic'] = args.deterministic

    runner = build_runner(cfg)
    runner.train()
    print(f'Training finished. Work dir: {os.path.abspath(cfg.work_dir)}')


if __name__ == '__main__':
    main()
