"""Evaluate a checkpoint on a config's test set; optionally write prediction pictures.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--data-root DIR]
        [--cfg-options key=value ...] [--launcher {none,pytorch}]

Metrics go to the log and to ``<work_dir>/metrics_test.json``.
"""
from __future__ import annotations

import argparse
import os
import sys

from mmengine.config import DictAction


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go (default: work_dirs/<config name>)')
    parser.add_argument('--show-dir', help='write prediction pictures into this folder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries (keys are checked)')
    parser.add_argument('--data-root', help="replace the config's data_root (e.g. a demo stand-in)")
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    from visionattn.mm.cli import build_runner, check_band_counts, check_data_roots, check_neck_channels, \
        enable_prediction_pictures, load_config

    if not os.path.isfile(args.checkpoint):
        sys.exit(f'checkpoint {args.checkpoint} does not exist')
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.data_root)
    check_data_roots(cfg, ('test_dataloader',))
    check_neck_channels(cfg)
    check_band_counts(cfg)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    pictures = enable_prediction_pictures(cfg, os.path.abspath(args.show_dir)) if args.show_dir else None
    runner = build_runner(cfg)
    runner.test()
    print(f'Metrics: {os.path.abspath(os.path.join(cfg.work_dir, "metrics_test.json"))}')
    if pictures:
        print(f'Prediction pictures: {pictures}')


if __name__ == '__main__':
    main()
