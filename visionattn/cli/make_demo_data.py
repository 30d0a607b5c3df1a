"""Write small synthetic stand-ins of the public datasets, in their real layouts (see visionattn.demo_data).

    python tools/make_demo_data.py [--out data/demo] [--tasks ade20k coco imagenet ...] [--seed 0]
        [--num-train N] [--num-val N]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_debug_argument, cli_main
from ..demo_data import MAKERS, make_demo_data


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('data/demo'), help='root folder (default data/demo)')
    parser.add_argument('--tasks', nargs='+', choices=sorted(MAKERS), default=sorted(MAKERS))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, help='override the number of training images')
    parser.add_argument('--num-val', type=int, help='override the number of validation images')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    roots = make_demo_data(args.out, args.tasks, args.seed, args.num_train, args.num_val)
    for task, root in roots.items():
        print(f'{task}: {root}')


if __name__ == '__main__':
    main()
