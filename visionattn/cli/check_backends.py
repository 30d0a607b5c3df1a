"""Check every attention backend against the PyTorch path on a device (forward and every gradient).

    python tools/check_backends.py --device cuda --out check.md

The first step of ``tools/gpu_check.sh``: what it compares and the error bounds are in
:mod:`visionattn.analysis.backend_check`. Prints one line per (problem, backend, dtype); exits 1, naming
each mismatch, if any backend disagrees or fails.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from . import add_debug_argument, cli_main
from ..analysis.backend_check import check, format_results
from ..analysis.model_benchmark import DTYPES
from ..errors import ConfigError
from .benchmark_kernels import device_name

_BACKENDS = ('triton', 'flex', 'reference')


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', nargs='+', choices=DTYPES, default=['fp32', 'fp16', 'bf16'])
    parser.add_argument('--backend', nargs='+', choices=_BACKENDS, default=list(_BACKENDS),
                        help='backends compared with the PyTorch path (those that cannot run on the device are '
                             'left out)')
    parser.add_argument('--quick', action='store_true', help='small problems (a CPU run, Triton interpreted)')
    parser.add_argument('--perturb', type=float, default=0.0, metavar='REL',
                        help="self-test: scale every backend's results by 1 + REL before the comparison, as a "
                             'wrong kernel would be; any REL above the bounds must fail the check')
    parser.add_argument('--out', type=Path, help='write the table here too')
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    if not math.isfinite(args.perturb) or args.perturb < 0:
        raise ConfigError(f'--perturb must be a finite relative error >= 0, not {args.perturb}')
    device = torch.device(args.device)
    results = check(device, [DTYPES[d] for d in args.dtype], args.quick, tuple(args.backend), args.perturb)
    failed = [r for r in results if not r.ok]
    header = (f'Device: {device_name(device)}; torch {torch.__version__}; '
              f'command: python tools/check_backends.py {" ".join(argv)}')
    table = format_results(results)
    summary = (f'{len(results)} tensors compared, {len(failed)} mismatched' if results else
               'nothing compared: no backend other than the PyTorch path runs on this device')
    print(header, table, summary, sep='\n\n')
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f'{header}\n\n{table}\n\n{summary}\n')
    if failed or not results:
        for r in failed:
            detail = r.note or f'relative error {r.error:.2e} > {r.bound:.0e}'
            print(f'MISMATCH: {r.case} {r.backend} {r.dtype} {r.tensor}: {detail}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
