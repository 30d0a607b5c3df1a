"""Model cards: one generated Markdown card per model of the project, and the README's model tables.

    python tools/model_cards.py                      # (re)write model_cards/*.md and the README tables
    python tools/model_cards.py --measure [--families nat biformer | --models nat_tiny ...] [--missing]
                                [--threads N] [--batch 4] [--train-batch 2] [--timeout 600]
    python tools/model_cards.py --check              # exit 1 if a card or the README tables are out of date

What a card is made of: :mod:`visionattn.analysis.model_cards`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import add_debug_argument, cli_main
from ..analysis.model_cards import CardPaths, check, load_measurements, load_reported, measure, registered_models, write
from ..errors import MissingFileError, UnknownNameError


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument('--measure', action='store_true', help='measure models, then write the cards')
    action.add_argument('--check', action='store_true', help='exit 1 if any generated file is out of date')
    parser.add_argument('--models', nargs='+', help='measure only these models')
    parser.add_argument('--families', nargs='+', help='measure only these families')
    parser.add_argument('--missing', action='store_true', help='measure only models without a measurement')
    parser.add_argument('--device', default='cpu', help="'cpu', or 'cuda' to add GPU numbers")
    parser.add_argument('--batch', type=int, default=4, help='inference batch (default 4)')
    parser.add_argument('--train-batch', type=int, default=2, help='training-step batch (default 2)')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--budget', type=float, default=4.0, help='seconds of timed calls per mode (default 4)')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds per model before giving up')
    parser.add_argument('--root', type=Path, help='repository holding model_cards/, configs/ and README.md '
                                                  '(default: the checkout visionattn is imported from)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    paths = CardPaths(args.root) if args.root else CardPaths.of_checkout()
    if not paths.reported.is_dir():
        raise MissingFileError(f'{paths.root} has no model_cards/reported/: run from a checkout of the repository '
                               'or pass --root')

    if args.measure:
        models = registered_models(load_reported(paths))
        names = list(models)
        if args.models:
            unknown = sorted(set(args.models) - set(models))
            if unknown:
                raise UnknownNameError(f'{unknown} get no card; known: {names}')
            names = args.models
        if args.families:
            unknown = sorted(set(args.families) - set(models.values()))
            if unknown:
                raise UnknownNameError(f'unknown families {unknown}; known: {sorted(set(models.values()))}')
            names = [n for n in names if models[n] in args.families]
        if args.missing:
            have = load_measurements(paths)['models']
            names = [n for n in names if n not in have]
        measure(paths, names, args.batch, args.train_batch, args.threads, args.timeout, args.budget, args.device,
                command='python tools/model_cards.py ' + ' '.join(argv))
    problems = check(paths) if args.check else write(paths)
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.check and problems:
        print('Regenerate with: python tools/model_cards.py (after --measure for unmeasured models)', file=sys.stderr)
        raise SystemExit(1)


if __name__ == '__main__':
    main()
