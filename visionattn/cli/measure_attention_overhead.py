"""Parameter, multiply-add and CPU latency overhead of CBAM, ELA and Triplet attention on ResNet-50.

    python tools/measure_attention_overhead.py --threads 2 --rounds 15 --out benchmarks/attention_overhead_cpu.md \\
        --update-reported model_cards/reported/cnn_attention.json

What is measured and how: :mod:`visionattn.analysis.attention_overhead`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_debug_argument, cli_main
from ..analysis.attention_overhead import measure_overhead, render_report, update_reported


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--threads', type=int, help="torch threads (default: torch's choice)")
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--out', type=Path, help='also write the report (markdown) here')
    parser.add_argument('--update-reported', type=Path,
                        help="replace the measured entries of this model_cards/reported JSON with this run's")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    run = measure_overhead(args.size, tuple(args.batches), args.rounds, args.warmup, args.threads)
    report = render_report(run, 'python tools/measure_attention_overhead.py ' + ' '.join(argv))
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    if args.update_reported:
        update_reported(args.update_reported, run, str(args.out or 'stdout'))
        print(f'Updated {args.update_reported}')


if __name__ == '__main__':
    main()
