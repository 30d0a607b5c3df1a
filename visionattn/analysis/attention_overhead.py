"""Parameter, multiply-add and CPU latency overhead of CBAM, ELA and Triplet attention on ResNet-50.

Compares, side by side in one run, timm's plain ResNet-50, timm's SE-ResNet-50 and ResNet-50 with each
module of :mod:`visionattn.layers.cnn_attention` in every block (plus timm's own ELA variant):

- Multiply-adds: :func:`visionattn.analysis.profiling.count_flops` on one image, divided by two. It
  counts convolutions and matrix products only: pooling, normalisation, sigmoid and the element-wise
  gating are not counted, as in the papers' and fvcore's conventions, so a module's cost is mostly its
  convolutions and MLP.
- CPU latency: eval mode under ``torch.inference_mode``; the models are timed in interleaved rounds
  (one forward of each model per round) so that load on the machine hits them alike; median and
  inter-quartile range per model, at each batch size, and the minimum (the least disturbed run, the
  better estimate when other processes share the machine).

:func:`measure_overhead` measures, :func:`render_report` writes the markdown report and
:func:`update_reported` writes the overheads into ``model_cards/reported/cnn_attention.json``.
"""
from __future__ import annotations

import datetime
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .profiling import count_flops, cpu_name

__all__ = ['MODELS', 'Overhead', 'measure_overhead', 'render_report', 'update_reported']

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


@dataclass
class Overhead:
    """One run's measurements of :data:`MODELS` and the settings they were taken with."""
    size: int
    threads: int
    rounds: int
    warmup: int
    params: dict[str, int]
    macs: dict[str, int]
    latency: dict[int, dict[str, list[float]]]  # batch -> label -> ms per round
    load_before: float
    load_after: float


def _time_models(models: dict[str, torch.nn.Module], batch: int, size: int, rounds: int,
                 warmup: int) -> dict[str, list[float]]:
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


def measure_overhead(size: int = 224, batches: tuple[int, ...] = (1, 8), rounds: int = 15, warmup: int = 3,
                     threads: int | None = None) -> Overhead:
    """Build :data:`MODELS` and measure their parameters, multiply-adds and interleaved CPU latency."""
    import timm

    import visionattn  # noqa: F401  (registers the models)
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    models = {label: timm.create_model(name, **kwargs).eval() for label, (name, kwargs, _) in MODELS.items()}
    params = {label: sum(p.numel() for p in m.parameters()) for label, m in models.items()}
    macs = {label: count_flops(m, torch.randn(1, 3, size, size)) // 2 for label, m in models.items()}
    load_before = os.getloadavg()[0]
    latency = {b: _time_models(models, b, size, rounds, warmup) for b in batches}
    return Overhead(size, threads, rounds, warmup, params, macs, latency, load_before, os.getloadavg()[0])


def _change(value: float, reference: float) -> str:
    return f'{100 * (value / reference - 1):+.1f}%'


def render_report(run: Overhead, command: str) -> str:
    """The markdown report of a run (``benchmarks/attention_overhead_cpu.md``)."""
    import timm
    lines = [
        f'# Overhead of CNN attention modules on ResNet-50 ({run.size}x{run.size})',
        '',
        f'Command: `{command}`',
        f'Machine: {cpu_name()}, {run.threads} torch threads, torch {torch.__version__}, timm {timm.__version__}, '
        f'{datetime.date.today().isoformat()}; 1-minute load average {run.load_before:.1f} before and '
        f'{run.load_after:.1f} after the timing (on {os.cpu_count()} CPUs: other processes shared the machine when '
        'it exceeds the thread count).',
        '',
        'Multiply-adds (MACs): convolutions and matrix products counted by torch FlopCounterMode / 2, batch 1; '
        'pooling, norms and element-wise gating not counted. Latency: median over interleaved rounds '
        f'({run.rounds} rounds after {run.warmup} warm-up), IQR in brackets; overhead columns compare medians.',
        '',
    ]
    header = '| model | params (M) | +params vs plain | GMACs | +MMACs vs plain |'
    rule = '|---|---:|---:|---:|---:|'
    for b in run.latency:
        header += f' batch {b} median ms [IQR] | vs plain | vs SE | batch {b} min ms | vs plain | vs SE |'
        rule += '---:|---:|---:|---:|---:|---:|'
    lines += [header, rule]
    for label in MODELS:
        row = (f'| {label} | {run.params[label] / 1e6:.3f} | {(run.params[label] - run.params[BASE]) / 1e3:+.1f}k '
               f'| {run.macs[label] / 1e9:.3f} | {(run.macs[label] - run.macs[BASE]) / 1e6:+.2f} |')
        for times in run.latency.values():
            q = statistics.quantiles(times[label], n=4)
            med, low = statistics.median(times[label]), min(times[label])
            row += (f' {med:.1f} [{q[0]:.1f}-{q[2]:.1f}] | {_change(med, statistics.median(times[BASE]))} '
                    f'| {_change(med, statistics.median(times[SE]))} '
                    f'| {low:.1f} | {_change(low, min(times[BASE]))} | {_change(low, min(times[SE]))} |')
        lines.append(row)
    return '\n'.join(lines) + '\n'


def update_reported(path: Path, run: Overhead, report: str) -> None:
    """Write this run's overheads into the model cards' results at ``path``, replacing earlier measured entries.

    ``report`` names where the full report was written (or ``'stdout'``).
    """
    cards = json.loads(path.read_text()) if path.exists() else {}
    source = MEASURED + f'tools/measure_attention_overhead.py ({report})'
    task = f'overhead on ResNet-50, {run.size}x{run.size}'
    for label, (name, _, default) in MODELS.items():
        if not default or label in (BASE, SE):
            continue
        card = cards.setdefault(name, {'weights': None, 'results': []})
        results = [r for r in card['results'] if not r['source'].startswith(MEASURED)]
        results += [
            dict(task=task, metric='extra params vs ResNet-50 (k)',
                 value=round((run.params[label] - run.params[BASE]) / 1e3, 1), setting='', source=source),
            dict(task=task, metric='extra multiply-adds vs ResNet-50 (M)',
                 value=round((run.macs[label] - run.macs[BASE]) / 1e6, 2),
                 setting='conv and matmul multiply-adds (torch FlopCounterMode / 2), batch 1', source=source)]
        for b, times in run.latency.items():
            for stat, fn in (('median', statistics.median), ('minimum', min)):
                for ref in (BASE, SE):
                    results.append(dict(
                        task=task, metric=f'CPU latency vs {ref} (%)',
                        value=round(100 * (fn(times[label]) / fn(times[ref]) - 1), 1),
                        setting=f'batch {b}, {run.threads} threads, {cpu_name()}, {stat} of {run.rounds} '
                                'interleaved rounds',
                        source=source))
        card['results'] = results
    path.write_text(json.dumps(cards, indent=2) + '\n')
