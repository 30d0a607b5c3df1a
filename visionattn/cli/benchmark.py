"""Whole-model benchmark: images/s and peak memory of inference and of a training step, FLOPs, parameters.

    python tools/benchmark.py --models biformer_small nat_tiny --img-size 224 384 --batch 8 \
        --train-batch 4 --backend auto reference --out benchmarks/models_cpu.json

Every (model, input size, backend) row runs in its own process with a time limit; what is measured
and how is described in :mod:`visionattn.analysis.model_benchmark`. ``--backend reference`` adds rows
on the attention operators' reference formulation (BiFormer: upstream's gather-based routing
attention) for the models that call the project's operators; other models get ``auto`` rows only.
``--flops --modes`` (no modes) counts only parameters and FLOPs, at any ``--img-size``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import add_debug_argument, cli_main
from ..analysis.model_benchmark import DTYPES, MODES, Spec, backend_matters, format_table, run_isolated
from ..analysis.profiling import load_average, machine
from ..ops.dispatch import BACKENDS

# --impl (before the attention backends were named in one place) -> --backend
_IMPL_BACKENDS = {'ours': 'auto', 'upstream': 'reference'}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', required=True, help='timm model names (after `import visionattn`)')
    parser.add_argument('--img-size', type=int, nargs='+', default=[0],
                        help='square input sides; 0 = the model\'s default input size (default)')
    parser.add_argument('--batch', type=int, default=8, help='inference batch')
    parser.add_argument('--train-batch', type=int, default=4, help='training-step batch')
    parser.add_argument('--modes', nargs='*', choices=MODES, default=list(MODES),
                        help='what to time (none: with --flops, only parameters and FLOPs)')
    parser.add_argument('--backend', nargs='+', choices=BACKENDS, default=['auto'],
                        help="attention backends to measure each model on ('reference': the operators' "
                             "reference formulation, e.g. BiFormer's gather)")
    parser.add_argument('--impl', nargs='+', choices=sorted(_IMPL_BACKENDS), help=argparse.SUPPRESS)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', choices=DTYPES, default='fp32', help='autocast dtype (fp32: no autocast)')
    parser.add_argument('--flops', action='store_true', help='also count forward FLOPs at batch 1')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--repeat', type=int, default=5, help='most timed calls per measurement')
    parser.add_argument('--budget', type=float, default=20.0, help='seconds of timed calls per measurement')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds per row before it is given up')
    parser.add_argument('--out', type=Path, help='write the rows as JSON here and the table beside it as .md')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.impl:
        backends = [_IMPL_BACKENDS[impl] for impl in args.impl]
        print(f"warning: --impl is deprecated, use --backend {' '.join(backends)}", file=sys.stderr)
        args.backend = backends
    return args


def specs_from_args(args: argparse.Namespace) -> list[Spec]:
    """The rows to measure; backends other than 'auto' only for models that call the project's operators."""
    specs = []
    for model in args.models:
        backends = args.backend
        if any(b != 'auto' for b in backends) and not backend_matters(model):
            backends = [b for b in backends if b == 'auto']
            print(f'{model}: calls no visionattn attention operator, measured on the auto backend only',
                  file=sys.stderr)
        for size in args.img_size:
            for backend in backends:
                specs.append(Spec(model=model, img_size=size or None, batch=args.batch, train_batch=args.train_batch,
                                  device=args.device, dtype=args.dtype, backend=backend, modes=tuple(args.modes),
                                  flops=args.flops, repeat=args.repeat, budget_s=args.budget, threads=args.threads))
    return specs


@cli_main
def main(argv: list[str]) -> None:
    args = parse_args(argv)
    rows = []
    env = machine(args.device, args.threads)
    for spec in specs_from_args(args):
        row = run_isolated(spec, args.timeout)
        rows.append(row)
        print(format_table([row]).splitlines()[-1], flush=True)
    env['load_average_after'] = load_average()
    device = env.get('gpu') or f"CPU ({env['cpu']}, {env['threads']} threads)"
    header = (f"Device: {device}; torch {env['torch']}; load average {env['load_average']} -> "
              f"{env['load_average_after']}; {env['date']}\n"
              f"Command: python tools/benchmark.py {' '.join(argv)}\n"
              "Peak MiB: live tensor memory at the peak of the first call with a newly built model (weights, "
              "and for training gradients, AdamW state and activations), above what existed before it.")
    table = format_table(rows)
    print(header)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(environment=env, header=header, rows=rows), indent=1) + '\n')
        args.out.with_suffix('.md').write_text(f'{header}\n\n{table}\n')
        print(f'Wrote {args.out} and {args.out.with_suffix(".md")}')


if __name__ == '__main__':
    main()
