"""Train a classification (mmpretrain), detection (mmdet) or segmentation (mmseg) config.

    python -m visionattn.cli.train CONFIG [--work-dir DIR] [--iters N | --epochs N] [--resume [auto|PATH]]
        [--amp] [--cfg-options key=value ...] [--data-root DIR] [--seed N] [--deterministic] [--skip-bad-samples]
        [--non-strict] [--tensorboard] [--verbose] [--launcher {none,pytorch}] [--dist-timeout SECONDS] [--debug]

(also ``visionattn-train`` and ``tools/train.py``). CONFIG is a file or the name of a shipped config
(``demo/biformer_tiny_ade20k_demo``). ``--iters`` / ``--epochs`` change the training length and rescale the
config's learning-rate schedule with it.

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
from .run_options import add_run_arguments, config_errors_as_user_errors, load_run_config


def _positive_int(text: str) -> int:
    value = int(text) if text.lstrip('-').isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f'a whole number, 1 or more, is needed; got {text!r}')
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    length = parser.add_mutually_exclusive_group()
    length.add_argument('--iters', type=_positive_int, metavar='N',
                        help='train for N iterations (iteration-based configs); the schedule is rescaled to it')
    length.add_argument('--epochs', type=_positive_int, metavar='N',
                        help='train for N epochs (epoch-based configs); the schedule is rescaled to it')
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
    from visionattn.console import run_summary

    length = {'train_cfg.max_iters': args.iters} if args.iters else \
        {'train_cfg.max_epochs': args.epochs} if args.epochs else {}
    cfg = load_run_config(args, ('train_dataloader', 'val_dataloader'), length)
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

    with config_errors_as_user_errors():
        runner = build_runner(cfg)
        runner.logger.info(run_summary(runner, 'train'))
        runner.train()
    work_dir = os.path.abspath(cfg.work_dir)
    last = os.path.join(work_dir, 'last_checkpoint')
    print(f'Training finished. Work dir: {work_dir}')
    if os.path.isfile(last):
        with open(last) as f:
            print(f'  last checkpoint: {f.read().strip()}')
    metrics = os.path.join(work_dir, 'metrics_val.json')
    if os.path.isfile(metrics):
        print(f'  metrics:         {metrics}')


if __name__ == '__main__':
    main()
