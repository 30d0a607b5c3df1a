"""Benchmark the project's attention operators against their baselines and print a table.

    python tools/benchmark_kernels.py --op na bra --device cuda --out benchmarks/kernels_h100.json

Scopes: ``quick`` (tiny problems: a smoke run of every implementation), ``compare`` (the published stage
sizes of NAT-T and BiFormer-S, every implementation side by side: the tables issue 17's targets are read
from), ``full`` (``compare`` plus each suite's other problems). The suites live in
:mod:`visionattn.analysis.kernel_suites`. Results are committed under ``benchmarks/`` with the device name
and the command that made them; ``--auto-table`` writes the measured table the ``'auto'`` backend ranks
'triton' and 'flex' by on CUDA (``visionattn/ops/auto_backends.json``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import add_debug_argument, cli_main
from ..analysis.kernel_suites import SCOPES, SUITES, run_suite
from ..analysis.kernel_suites.common import auto_table, format_table, rows_as_dicts
from ..analysis.model_benchmark import DTYPES
from ..analysis.profiling import cpu_name, load_average
from ..errors import ConfigError


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU ({cpu_name()}, {torch.get_num_threads()} threads)'


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--op', nargs='+', choices=SUITES, default=list(SUITES))
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', nargs='+', choices=DTYPES, default=None,
                        help='default: fp16 bf16 on CUDA, fp32 on CPU')
    parser.add_argument('--scope', choices=SCOPES, default='full')
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument('--budget', type=float,
                        help='seconds for the whole run: rows not started by then are listed as not run')
    parser.add_argument('--out', type=Path, help='write the rows as JSON here (and the table beside it as .md)')
    parser.add_argument('--auto-table', type=Path,
                        help="write the measured 'triton'/'flex' table of the 'auto' backend here (CUDA runs)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        raise ConfigError(f'--budget must be positive seconds, not {args.budget}')
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    deadline = None if args.budget is None else time.monotonic() + args.budget
    device = torch.device(args.device)
    dtype_names = args.dtype or (['fp16', 'bf16'] if device.type == 'cuda' else ['fp32'])
    load_before, started = load_average(), time.strftime('%Y-%m-%d %H:%M %Z')
    rows = []
    for op in args.op:
        rows += run_suite(op, device, [DTYPES[d] for d in dtype_names], args.scope, deadline)
    header = (f'Device: {device_name(device)}; torch {torch.__version__}; {started}; load average {load_before} -> '
              f'{load_average()}; command: python tools/benchmark_kernels.py {" ".join(argv)}')
    table = format_table(rows)
    print(header)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({'header': header, 'rows': rows_as_dicts(rows)}, indent=1))
        args.out.with_suffix('.md').write_text(f'{header}\n\n{table}\n')
    if args.auto_table:
        args.auto_table.parent.mkdir(parents=True, exist_ok=True)
        args.auto_table.write_text(json.dumps(auto_table(rows, device_name(device)), indent=1) + '\n')


if __name__ == '__main__':
    main()
