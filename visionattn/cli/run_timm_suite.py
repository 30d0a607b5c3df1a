"""Run timm's own model test-suite (its tests/test_models.py, fetched from timm's sdist) on visionattn's models.

    python tools/run_timm_suite.py [--fast] [--models NAME ...] [--threads N] [--workers N] [--sdist timm-X.tar.gz]
        [--report-json FILE] [--before FILE] [--out FILE.md] [--log FILE] [-- PYTEST_ARGS ...]

--fast: every default-config test, and forward, backward, FX and TorchScript on the smallest model of each
family (what CI runs). Prints the per-family table (passed/failed/skipped per test) and every failure;
--before adds a previous run's --report-json as "before -> after"; --out writes the table with the
command and its time. Exit status 1 when a test failed.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import timm

from . import add_debug_argument, cli_main
from ..errors import MissingFileError
from ..timm_suite import DEFAULT_CACHE, fetch_test_file, model_family, results_table, run_timm_suite


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--fast', action='store_true', help='the fast part CI runs')
    parser.add_argument('--models', nargs='+', default=[], help='project models to test (default: all)')
    parser.add_argument('--threads', type=int, help='intra-op threads of each test process (OMP_NUM_THREADS)')
    parser.add_argument('--workers', type=int, default=1, help='test processes running at once (default 1)')
    parser.add_argument('--timm-version', default=timm.__version__, help='default: the installed timm')
    parser.add_argument('--sdist', type=Path, help="timm's source distribution on disk, instead of the package index")
    parser.add_argument('--cache-dir', type=Path, default=DEFAULT_CACHE, help=f'default {DEFAULT_CACHE}')
    parser.add_argument('--report-json', type=Path, help='write every outcome to this file')
    parser.add_argument('--before', type=Path, help='a previous --report-json, shown as before -> after')
    parser.add_argument('--log', type=Path, help="pytest's output, written while it runs (one line per test)")
    parser.add_argument('--out', type=Path, help='write the table (with command and time) to this markdown file')
    parser.add_argument('pytest_args', nargs='*', help='passed on to pytest (after --)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.before is not None and not args.before.is_file():
        raise MissingFileError(f'--before {args.before} does not exist: give the --report-json of an earlier run')
    test_file = fetch_test_file(args.timm_version, args.cache_dir, args.sdist)
    run = run_timm_suite(test_file, args.models, args.fast, args.threads, args.pytest_args, args.log, args.workers)
    # families as this version defines them (a report of an older version may group the models otherwise)
    before = [dict(o, family=model_family(o['model'].split('.')[0])) for o in json.loads(args.before.read_text())
              if timm.is_model(o['model'].split('.')[0])] if args.before else None
    table = results_table(run.outcomes, before)
    command = 'python tools/run_timm_suite.py ' + shlex.join(argv)
    print(table)
    timing = f'{run.seconds:.0f} s wall, {run.cpu_seconds:.0f} s CPU'
    print(f'\n{run.summary} ({timing}): {command}')
    if args.report_json:
        args.report_json.write_text(json.dumps(run.outcomes, indent=1))
    if args.out:
        args.out.write_text(f'# timm {args.timm_version} tests/test_models.py on visionattn\n\n'
                            f'Command: `{command}` ({timing}; pytest: {run.summary})\n\n{table}\n')
    if any(o['outcome'] == 'failed' for o in run.outcomes):
        raise SystemExit(1)


if __name__ == '__main__':
    main()
