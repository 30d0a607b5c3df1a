"""Benchmark the project's attention operators against their baselines and print a table.

    python tools/benchmark_kernels.py --op na2d bra --device cuda --out benchmarks/kernels_h100.json

The suites live in :mod:`visionattn.analysis.kernel_suites`. Results are committed under
``benchmarks/`` with the device name and the command that made them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from . import add_debug_argument, cli_main
from ..analysis.kernel_suites import SUITES, run_suite
from ..analysis.kernel_suites.common import format_table, rows_as_dicts
from ..analysis.model_benchmark import DTYPES
from ..analysis.profiling import cpu_name


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
    parser.add_argument('--quick', action='store_true', help='fewer, smaller problems (smoke run)')
    parser.add_argument('--out', type=Path, help='write the rows as JSON here (and the table beside it as .md)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype_names = args.dtype or (['fp16', 'bf16'] if device.type == 'cuda' else ['fp32'])
    rows = []
    for op in args.op:
        rows += run_suite(op, device, [DTYPES[d] for d in dtype_names], quick=args.quick)
    header = (f'Device: {device_name(device)}; torch {torch.__version__}; '
              f'command: python tools/benchmark_kernels.py {" ".join(argv)}')
    table = format_table(rows)
    print(header)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({'header': header, 'rows': rows_as_dicts(rows)}, indent=1))
        args.out.with_suffix('.md').write_text(f'{header}\n\n{table}\n')


if __name__ == '__main__':
    main()
