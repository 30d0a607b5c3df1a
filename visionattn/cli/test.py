"""Evaluate a checkpoint on a config's test set; optionally write prediction pictures.

    python -m visionattn.cli.test CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--data-root DIR]
        [--cfg-options key=value ...] [--skip-bad-samples] [--non-strict] [--tensorboard] [--verbose]
        [--launcher {none,pytorch}] [--dist-timeout SECONDS] [--debug]

(also ``visionattn-test`` and ``tools/test.py``). CONFIG is a file or the name of a shipped config.
Metrics go to the log and to ``<work_dir>/metrics_test.json`` (with ``--skip-bad-samples``, also the number of
bad files left out). The checkpoint must fit the config's model (``--non-strict`` loads what fits and names the
rest); building the model never fetches pretrained weights.
"""
from __future__ import annotations

import argparse
import os

from . import cli_main
from ..checkpoint import verify_checkpoint
from .run_options import add_run_arguments, config_errors_as_user_errors, load_run_config


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--show-dir', help='write prediction pictures into this folder')
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str]) -> None:
    args = parse_args(argv)
    from visionattn.mm.config import build_runner, enable_prediction_pictures
    from visionattn.console import run_summary

    verify_checkpoint(args.checkpoint)  # a missing, empty or truncated file stops before anything is built
    cfg = load_run_config(args, ('test_dataloader',))
    cfg.load_from = args.checkpoint
    pictures = enable_prediction_pictures(cfg, os.path.abspath(args.show_dir)) if args.show_dir else None
    with config_errors_as_user_errors():
        runner = build_runner(cfg)
        runner.logger.info(run_summary(runner, 'test'))
        runner.test()
    print(f'Metrics: {os.path.abspath(os.path.join(cfg.work_dir, "metrics_test.json"))}')
    if pictures:
        print(f'Prediction pictures: {pictures}')


if __name__ == '__main__':
    main()
