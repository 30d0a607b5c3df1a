"""The options the train and test programs share, and the checked config they run."""
from __future__ import annotations

import argparse
import os

from mmengine.config import Config, DictAction

from ..errors import ConfigError
from . import add_debug_argument

__all__ = ['add_run_arguments', 'load_run_config']


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every run program takes: the config, where results go, overrides, data root, launcher."""
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs, checkpoints and metrics go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. train_cfg.max_iters=100 (keys are checked)')
    parser.add_argument('--data-root', help="replace the config's data_root (e.g. a demo stand-in)")
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none', help='job launcher')
    parser.add_argument('--dist-timeout', type=float, metavar='SECONDS',
                        help='distributed runs: how long a collective operation waits for the other processes before '
                        'the run stops, naming the process that did not answer (env_cfg.dist_cfg.timeout; default '
                        '300 on CPU/gloo, 600 for NCCL)')
    parser.add_argument('--skip-bad-samples', action='store_true',
                        help='leave out images and masks that are missing, damaged or invalid instead of stopping at '
                        'the first (training: another sample takes its place; evaluation: it is not scored); each is '
                        'logged and their number goes into the metrics JSON')
    parser.add_argument('--non-strict', action='store_true',
                        help='load a checkpoint that does not fit the model: only the matching tensors, with a '
                        'warning that names the rest (default: stop with that report)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    add_debug_argument(parser)


def load_run_config(args: argparse.Namespace, loaders: tuple[str, ...]) -> Config:
    """The config a program runs (options of :func:`add_run_arguments`), checked before anything is built:
    the data roots of ``loaders``, the neck's input channels and the band counts."""
    from visionattn.mm.config import check_band_counts, check_data_roots, check_neck_channels, load_config
    from visionattn.mm.validation import enable_bad_sample_skipping

    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.data_root)
    check_data_roots(cfg, loaders)
    check_neck_channels(cfg)
    check_band_counts(cfg)
    cfg.launcher = args.launcher
    if args.dist_timeout is not None:
        if not args.dist_timeout > 0:
            raise ConfigError(f'--dist-timeout must be a positive number of seconds, got {args.dist_timeout:g}')
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['timeout'] = args.dist_timeout
    if args.skip_bad_samples:
        enable_bad_sample_skipping(cfg, loaders)
    if args.non_strict:
        cfg.load_strict = False
    return cfg
