"""Parameter, multiply-add and CPU latency overhead of CBAM, ELA and Triplet attention on ResNet-50.

Compares, side by side in one run, timm's plain ResNet-50, timm's SE-ResNet-50 and ResNet-50 with
each module of :mod:`visionattn.layers.cnn_attention` in every block (plus timm's own ELA variant).

- Multiply-adds: ``torch.utils.flop_counter.FlopCounterMode`` on one 224x224 image, divided by two
  (it counts a multiply-add as two FLOPs). It counts convolutions and matrix products only:
  pooling, normalisation, sigmoid and the element-wise gating are not counted, as in the papers'
  and fvcore's conventions, so a module's cost is mostly its convolutions and MLP.
- CPU latency: eval mode under ``torch.inference_mode``; the models are timed in interleaved
  rounds (one forward of each model per round) so that load on the machine hits them alike;
  median and inter-quartile range per model, at each batch size, and the minimum (the least
  disturbed run, the better estimate when other processes share the machine).

    python tools/measure_attention_overhead.py --threads 2 --rounds 15 --out benchmarks/attention_overhead_cpu.md \\
        --update-reported model_cards/reported/cnn_attention.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import visionattn  # noqa: F401  (registers the models)

MODELS = {  # label -> (timm name, kwargs, whether the row describes that model's default configuration)
    'ResNet-50': ('resnet50', {}, True),
    'ResNet-50 + SE (timm)': ('seresnet50', {}, True),
    'ResNet-50 + CBAM': ('resnet50_cbam', {}, True),
    'ResNet-50 + ELA-S': ('resnet50_ela', {}, True),
    'ResNet-50 + ELA-L': ('resnet50_ela', dict(attn_kwargs=dict(size='L')), False),
    'ResNet-50 + ELA (timm variant)': ('resnet50', dict(block_args=dict(attn_layer='ela')), False),
    'ResNet-50 + Triplet (k=7)': ('resnet50_triplet', {}, True),
}
BASE, SE = 'ResNet-50', 'ResNet-50 + SE (timm)'
MEASURED = 'measured in this repository: '


def multiply_adds(model: torch.nn.Module, size: int) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops() // 2


def time_models(models: dict[str, torch.nn.Module], batch: int, size: int, rounds: int, warmup: int) -> dict[str, list[float]]:
    x = torch.randn(batch, 3, size, size)
    times: dict[str, list[float]] = {label: [] for label in models}
    with torch.inference_mode():
        for i in range(warmup + rounds):
            for label, model in models.items():
                start = time.perf_counter()
                model(x)
                elapsed = time.perf_counter() - start
                if i >= warmup:
                    times[label].append(elapsed * 1e3)
    return times


def cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--out', type=Path, help='also write the report (markdown) here')
    parser.add_argument('--update-reported', type=Path,
                        help="replace the measured entries of this model_cards/reported JSON with this run's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    models = {label: timm.create_model(name, **kwargs).eval() for label, (name, kwargs, _) in MODELS.items()}
    params = {label: sum(p.numel() for p in m.parameters()) for label, m in models.items()}
    macs = {label: multiply_adds(m, args.size) for label, m in models.items()}
    load_before = os.getloadavg()[0]
    latency = {b: time_models(models, b, args.size, args.rounds, args.warmup) for b in args.batches}
    load_after = os.getloadavg()[0]

    base, se = BASE, SE
    lines = [
        f'# Overhead of CNN attention modules on ResNet-50 ({args.size}x{args.size})',
        '',
        f'Command: `python {" ".join(sys.argv)}`',
        f'Machine: {cpu_name()}, {args.threads} torch threads, torch {torch.__version__}, timm {timm.__version__}, '
        f'{datetime.date.today().isoformat()}; 1-minute load average {load_before:.1f} before and {load_after:.1f} '
        f'after the timing (on {os.cpu_count()} CPUs: other processes shared the machine when it exceeds the thread count).',
        '',
        'Multiply-adds (MACs): convolutions and matrix products counted by torch FlopCounterMode / 2, batch 1; '
        'pooling, norms and element-wise gating not counted. Latency: median over interleaved rounds '
        f'({args.rounds} rounds after {args.warmup} warm-up), IQR in brackets; overhead columns compare medians.',
        '',
    ]
    header = '| model | params (M) | +params vs plain | GMACs | +MMACs vs plain |'
    rule = '|---|---:|---:|---:|---:|'
    for b in args.batches:
        header += f' batch {b} median ms [IQR] | vs plain | vs SE | batch {b} min ms | vs plain | vs SE |'
        rule += '---:|---:|---:|---:|---:|---:|'
    lines += [header, rule]
    for label in models:
        row = (f'| {label} | {params[label] / 1e6:.3f} | {(params[label] - params[base]) / 1e3:+.1f}k '
               f'| {macs[label] / 1e9:.3f} | {(macs[label] - macs[base]) / 1e6:+.2f} |')
        for b in args.batches:
            t = latency[b][label]
            q = statistics.quantiles(t, n=4)
            med = statistics.median(t)
            low = min(t)
            row += (f' {med:.1f} [{q[0]:.1f}-{q[2]:.1f}] | {100 * (med / statistics.median(latency[b][base]) - 1):+.1f}% '
                    f'| {100 * (med / statistics.median(latency[b][se]) - 1):+.1f}% '
                    f'| {low:.1f} | {100 * (low / min(latency[b][base]) - 1):+.1f}% | {100 * (low / min(latency[b][se]) - 1):+.1f}% |')
        lines.append(row)
    report = '\n'.join(lines) + '\n'
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    if args.update_reported:
        update_reported(args, params, macs, latency)


def update_reported(args: argparse.Namespace, params: dict, macs: dict, latency: dict) -> None:
    """Write this run's overheads into the model cards' results, replacing earlier measured entries."""
    cards = json.loads(args.update_reported.read_text()) if args.update_reported.exists() else {}
    source = MEASURED + f'tools/measure_attention_overhead.py ({args.out or "stdout"})'
    task = f'overhead on ResNet-50, {args.size}x{args.size}'
    for label, (name, _, default) in MODELS.items():
        if not default or label in (BASE, SE):
            continue
        card = cards.setdefault(name, {'weights': None, 'results': []})
        results = [r for r in card['results'] if not r['source'].startswith(MEASURED)]
        results += [
            dict(task=task, metric='extra params vs ResNet-50 (k)', value=round((params[label] - params[BASE]) / 1e3, 1),
                 setting='', source=source),
            dict(task=task, metric='extra multiply-adds vs ResNet-50 (M)', value=round((macs[label] - macs[BASE]) / 1e6, 2),
                 setting='conv and matmul multiply-adds (torch FlopCounterMode / 2), batch 1', source=source)]
        for b, times in latency.items():
            for stat, fn in (('median', statistics.median), ('minimum', min)):
                for ref in (BASE, SE):
                    results.append(dict(
                        task=task, metric=f'CPU latency vs {ref} (%)',
                        value=round(100 * (fn(times[label]) / fn(times[ref]) - 1), 1),
                        setting=f'batch {b}, {args.threads} threads, {cpu_name()}, {stat} of {args.rounds} interleaved rounds',
                        source=source))
        card['results'] = results
    args.update_reported.write_text(json.dumps(cards, indent=2) + '\n')


if __name__ == '__main__':
    main()
