"""The main job: make the demo data, train a segmentation model end to end, evaluate it, draw predictions.

    python tools/demo.py [--config CONFIG] [--work-dir work_dirs/demo] [--data data/demo]

Runs the make_demo_data (ADE20K stand-in), train and test (``--show-dir``) programs in subprocesses
as a user would, from the current folder, then compares the model's mIoU with the majority-class baseline of the same images
(predicting the most frequent class everywhere) and prints where everything is.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from . import add_debug_argument, cli_main

DEFAULT_CONFIG = 'demo/biformer_tiny_ade20k_demo'  # a shipped config, found from any folder


def majority_class_miou(annotation_dir: Path) -> float:
    """mIoU (%) of predicting the most frequent class everywhere, as mmseg's IoUMetric counts it."""
    counts = np.zeros(256, np.int64)
    for path in annotation_dir.glob('*.png'):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    counts = counts[1:151]  # reduce_zero_label: value 0 is ignored, 1..150 are the classes
    present = np.count_nonzero(counts)
    return 100.0 * counts.max() / counts.sum() / present


def run(program: str, *args: str) -> list[str]:
    """Run a visionattn program (``python -m visionattn.cli.<program>``), echoing its output; returns its lines."""
    command = [sys.executable, '-m', f'visionattn.cli.{program}', *args]
    print('+', ' '.join(command[1:]), flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        print(line, end='', flush=True)
        lines.append(line.rstrip('\n'))
    if proc.wait():
        raise UserError(f'{program} failed with exit code {proc.returncode} (its output is above)')
    return lines


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='a config file or the name of a shipped config')
    parser.add_argument('--work-dir', type=Path, default=Path('work_dirs/demo'))
    parser.add_argument('--data', type=Path, default=Path('data/demo'))
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    start = time.time()
    data_root = args.data / 'ade' / 'ADEChallengeData2016'
    run('make_demo_data', '--out', str(args.data), '--tasks', 'ade20k')
    run('train', args.config, '--work-dir', str(args.work_dir), '--data-root', str(data_root),
        '--seed', '0')
    checkpoint = (args.work_dir / 'last_checkpoint').read_text().strip()
    printed = run('test', args.config, checkpoint, '--work-dir', str(args.work_dir / 'test'),
                  '--data-root', str(data_root), '--show-dir', str(args.work_dir / 'predictions'))
    pictures = next(line.split(': ', 1)[1] for line in printed if line.startswith('Prediction pictures: '))

    miou = json.loads((args.work_dir / 'test' / 'metrics_test.json').read_text())['metrics']['mIoU']
    baseline = majority_class_miou(data_root / 'annotations' / 'validation')
    minutes = (time.time() - start) / 60
    print(f'\nDemo finished in {minutes:.1f} min.\n'
          f'  mIoU on the validation images: {miou:.1f}% (majority-class baseline: {baseline:.1f}%)\n'
          f'  checkpoint:          {checkpoint}\n'
          f'  metrics:             {(args.work_dir / "test" / "metrics_test.json").resolve()}\n'
          f'  prediction pictures: {pictures}\n'
          f'  training log:        {args.work_dir.resolve()}')
    if miou < 2 * baseline:
        raise UserError(f'mIoU {miou:.1f}% is not clearly above the majority-class baseline {baseline:.1f}%: '
                        'training did not work as it should')


if __name__ == '__main__':
    main()
