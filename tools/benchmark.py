"""Whole-model benchmark: images/s and peak memory of inference and of a training step.

    python tools/benchmark.py --models biformer_small nat_tiny --img-size 224 384 --batch 8 \
        --train-batch 4 --impl ours upstream --out benchmarks/models_cpu.json

Each (model, input size, implementation) is measured in its own subprocess, so one model's
allocations cannot hide another's peak, a crash or a time-out costs only that row, and
``--timeout`` bounds every row. In the subprocess:

1. **Peak memory** of inference and of one training step, each with its own new model: the peak
   of live tensor memory above what existed before the model was built (CUDA: the caching
   allocator's ``max_memory_allocated``; CPU: the same quantity from the profiler's allocation
   events, :func:`kernel_suites.common.peak_mib`, as the kernel benchmarks). So the figure holds the
   weights and, for training, gradients, AdamW's state and activations; it leaves out the
   interpreter, libraries and allocator slack, which a process's resident set would add.
2. **FLOPs** of one forward pass at batch 1 (``--flops``), counted by
   ``torch.utils.flop_counter.FlopCounterMode``: 2 FLOPs per multiply-add of matmuls, convolutions
   and attention (the operators of :mod:`visionattn.ops` register their formulas beside their
   definitions, 4·B·heads·N·K·d with K keys per query; torch has none for CPU SDPA, registered
   here). Element-wise ops and normalisations are not counted, as in upstream papers. An operator
   without a formula that is not plain PyTorch (or any attention/conv/matmul op) stops the count
   with an error instead of silently undercounting. ``--flops --modes`` (no modes) counts only
   parameters and FLOPs, at any ``--img-size``.
3. **Throughput**: one warm-up call, then as many timed calls as fit in ``--budget`` seconds
   (between 2 and ``--repeat``); the median.

``--impl upstream`` swaps in the upstream formulation where it can run here: BiFormer's
gather-based routing attention (``visionattn.ops.routing.bra_attention_reference``, a ``topk``-times
copy of K and V, as ``bra_legacy.py``). Other models have no separate upstream implementation that
runs on this stack (timm's DaViT/FocalNet/HaloNet are the upstream code; NATTEN lacks CPU kernels
and relative positional bias), so they are measured as ``ours`` only.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = ('infer', 'train')
IMPLS = ('ours', 'upstream')
DTYPES = ('fp32', 'bf16', 'fp16')
_RESULT_MARK = '@@benchmark-result@@ '


@dataclass
class Spec:
    """One benchmark row: what to build and how to run it."""
    model: str
    img_size: Optional[int] = None  # None: the model's default input size (pretrained_cfg)
    batch: int = 8
    train_batch: int = 4
    device: str = 'cpu'
    dtype: str = 'fp32'
    impl: str = 'ours'
    modes: tuple[str, ...] = MODES
    flops: bool = False
    repeat: int = 5
    budget_s: float = 20.0
    threads: Optional[int] = None


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------
def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, threads: Optional[int] = None) -> dict[str, Any]:
    """What the numbers depend on: device, threads (the measured processes'), versions, and the machine's load."""
    import torch
    env = dict(cpu=cpu_name(), cpu_count=os.cpu_count(), threads=threads or torch.get_num_threads(),
               torch=torch.__version__, python=platform.python_version(),
               date=time.strftime('%Y-%m-%d %H:%M:%S %Z'), load_average=[round(x, 2) for x in os.getloadavg()])
    if device.startswith('cuda'):
        env['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return env


# ---------------------------------------------------------------------------------------------
# FLOP counting
# ---------------------------------------------------------------------------------------------
def _register_cpu_sdpa_formula() -> None:
    """torch counts SDPA's CUDA kernels but not its CPU one (used by timm and BiFormer's global attention)."""
    import torch
    from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_flop_count

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op not in flop_registry:
        @register_flop_formula(op)
        def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(model: Any, sample: Any) -> int:
    """FLOPs of ``model(sample)`` (2 per multiply-add); raises if an unknown heavy op would be missed."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    class _SeenOps(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: set[Any] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(func._overloadpacket)
            return func(*args, **(kwargs or {}))

    import visionattn  # noqa: F401  (its attention ops register their FLOP formulas)
    _register_cpu_sdpa_formula()
    with torch.no_grad(), FlopCounterMode(display=False) as counter, _SeenOps() as seen:
        model(sample)
    heavy_words = ('attention', 'conv', 'mm', 'matmul', 'einsum', 'linear')
    missed = sorted(str(op) for op in seen.ops if op not in flop_registry and (
        str(op).split('.')[0] not in ('aten', 'prim', 'prims') or any(w in str(op) for w in heavy_words)))
    if missed:
        raise RuntimeError(f'FLOPs would be undercounted: {missed} have no FLOP formula. Register one with '
                           'torch.utils.flop_counter.register_flop_formula beside the operator, as '
                           'visionattn.ops does.')
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------------------
# Implementations compared side by side
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _biformer_gather_attention() -> Iterator[None]:
    """Route BiFormer's token attention through upstream's gather formulation."""
    from visionattn.ops import routing

    fast = routing.bra_attention

    def gather(q, k, v, region_index, region_grid, scale=None, key_mask=None, backend=None):
        return routing.bra_attention_reference(q, k, v, region_index, region_grid, scale, key_mask)

    routing.bra_attention = gather
    try:
        yield
    finally:
        routing.bra_attention = fast


# model-name prefix -> (what 'upstream' means, context manager that switches to it)
UPSTREAM_IMPLS: dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager]]] = {
    'biformer_': ('gather-based routing attention (bra_legacy.py)', _biformer_gather_attention),
}


def upstream_impl(model: str) -> Optional[tuple[str, Callable[[], contextlib.AbstractContextManager]]]:
    """How ``--impl upstream`` runs ``model``, or None if there is no separate upstream implementation."""
    return next((impl for prefix, impl in UPSTREAM_IMPLS.items() if model.startswith(prefix)), None)


# ---------------------------------------------------------------------------------------------
# The measurement (runs in a subprocess)
# ---------------------------------------------------------------------------------------------
def _time_bounded_ms(fn: Callable[[], Any], device: Any, repeat: int, budget_s: float) -> float:
    """Median ms of ``fn``: one warm-up call, then 2..``repeat`` calls within ``budget_s``."""
    from kernel_suites.common import time_ms
    start = time.perf_counter()
    time_ms(fn, device, warmup=0, repeat=1)  # warm-up (allocator, oneDNN primitives, autotuning)
    first_s = time.perf_counter() - start
    calls = max(2, min(repeat, int(budget_s / max(first_s, 1e-6))))
    return time_ms(fn, device, warmup=0, repeat=calls)


def measure(spec: Spec) -> dict[str, Any]:
    """Measure one row in this process (see the module docstring). Call through :func:`run_isolated`."""
    import timm
    import torch
    import torch.nn.functional as F

    import visionattn  # noqa: F401  (registers the project's models)
    from kernel_suites.common import peak_mib

    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    if not timm.is_model(spec.model):
        raise KeyError(f'unknown model {spec.model!r}: see timm.list_models() after `import visionattn`')
    cfg = timm.models.get_pretrained_cfg(spec.model)
    _, default_h, default_w = cfg.input_size
    size = (spec.img_size, spec.img_size) if spec.img_size else (default_h, default_w)
    dtype = dict(fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)[spec.dtype]
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    impl = contextlib.nullcontext()
    if spec.impl == 'upstream':
        upstream = upstream_impl(spec.model)
        if upstream is None:
            raise ValueError(f'{spec.model} has no separate upstream implementation that runs here')
        impl = upstream[1]()

    def build() -> Any:
        return timm.create_model(spec.model, pretrained=False).to(device)

    def batch_of(n: int) -> Any:
        return torch.randn(n, 3, *size, device=device)

    def inference_step(model: Any, x: Any) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode(), autocast:
                return model(x)
        return run

    def training_step(model: Any, x: Any) -> Callable[[], Any]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        target = torch.randint(0, model.num_classes, (x.shape[0],), device=device)

        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = F.cross_entropy(model(x).float(), target)
            loss.backward()
            optimizer.step()
        return run

    batches = dict(infer=spec.batch, train=spec.train_batch)
    make_step = dict(infer=inference_step, train=training_step)
    result: dict[str, Any] = dict(spec=asdict(spec), input_size=[3, *size], threads=torch.get_num_threads())
    with impl:
        models: dict[str, Any] = {}
        steps: dict[str, Callable[[], Any]] = {}
        for mode in spec.modes:
            def first_step() -> None:  # builds the model inside, so its weights count
                models[mode] = build().train(mode == 'train')
                steps[mode] = make_step[mode](models[mode], batch_of(batches[mode]))
                steps[mode]()
            result[mode] = dict(batch=batches[mode], peak_mib=round(peak_mib(first_step, device), 1))

        model = next(iter(models.values())) if models else build().eval()
        result['params'] = sum(p.numel() for p in model.parameters())
        if spec.flops:
            training = model.training
            result['flops'] = count_flops(model.eval(), batch_of(1))
            model.train(training)
        for mode in spec.modes:
            ms = _time_bounded_ms(steps[mode], device, spec.repeat, spec.budget_s)
            result[mode].update(ms=round(ms, 2), img_s=round(batches[mode] * 1e3 / ms, 2))
    return result


def run_isolated(spec: Spec, timeout_s: float) -> dict[str, Any]:
    """:func:`measure` in a fresh Python process; ``{'error': ...}`` if it fails or runs out of time."""
    cmd = [sys.executable, str(Path(__file__).resolve()), '--worker', json.dumps(asdict(spec))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return dict(spec=asdict(spec), error=f'timed out after {timeout_s:g} s')
    for line in reversed(out.splitlines()):
        if line.startswith(_RESULT_MARK):
            return json.loads(line[len(_RESULT_MARK):])
    return dict(spec=asdict(spec), error=f'exit code {proc.returncode}: {err.strip().splitlines()[-1:] or ""}',
                stderr_tail=err[-3000:])


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str) -> str:
    return '-' if value is None else format(value, spec)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of benchmark rows."""
    lines = ['| model | impl | input | params (M) | GMACs | infer batch | infer img/s | infer peak MiB | '
             'train batch | train img/s | train peak MiB | note |', '|' + '---|' * 12]
    for row in rows:
        spec, infer, train = row['spec'], row.get('infer', {}), row.get('train', {})
        size = row.get('input_size', [3, spec['img_size'] or 'default'])[1:]
        params, flops = row.get('params'), row.get('flops')
        lines.append(
            f"| {spec['model']} | {spec['impl']} | {'x'.join(map(str, size))} | "
            f"{_fmt(params and params / 1e6, '.2f')} | {_fmt(flops and flops / 2e9, '.2f')} | "
            f"{infer.get('batch', '-')} | {_fmt(infer.get('img_s'), '.2f')} | {_fmt(infer.get('peak_mib'), '.0f')} | "
            f"{train.get('batch', '-')} | {_fmt(train.get('img_s'), '.2f')} | {_fmt(train.get('peak_mib'), '.0f')} | "
            f"{row.get('error', '')} |")
    return '\n'.join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', help='timm model names (after `import visionattn`)')
    parser.add_argument('--img-size', type=int, nargs='+', default=[0],
                        help='square input sides; 0 = the model\'s default input size (default)')
    parser.add_argument('--batch', type=int, default=8, help='inference batch')
    parser.add_argument('--train-batch', type=int, default=4, help='training-step batch')
    parser.add_argument('--modes', nargs='*', choices=MODES, default=list(MODES),
                        help='what to time (none: with --flops, only parameters and FLOPs)')
    parser.add_argument('--impl', nargs='+', choices=IMPLS, default=['ours'],
                        help="'upstream': the upstream formulation where one runs here (BiFormer's gather)")
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', choices=DTYPES, default='fp32', help='autocast dtype (fp32: no autocast)')
    parser.add_argument('--flops', action='store_true', help='also count forward FLOPs at batch 1')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--repeat', type=int, default=5, help='most timed calls per measurement')
    parser.add_argument('--budget', type=float, default=20.0, help='seconds of timed calls per measurement')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds per row before it is given up')
    parser.add_argument('--out', type=Path, help='write the rows as JSON here and the table beside it as .md')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.worker and not args.models:
        parser.error('--models is required')
    return args


def specs_from_args(args: argparse.Namespace) -> list[Spec]:
    specs = []
    for model in args.models:
        for size in args.img_size:
            for impl in args.impl:
                if impl == 'upstream' and upstream_impl(model) is None:
                    continue
                specs.append(Spec(model=model, img_size=size or None, batch=args.batch, train_batch=args.train_batch,
                                  device=args.device, dtype=args.dtype, impl=impl, modes=tuple(args.modes),
                                  flops=args.flops, repeat=args.repeat, budget_s=args.budget, threads=args.threads))
    return specs


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.worker:
        spec = Spec(**json.loads(args.worker))
        spec.modes = tuple(spec.modes)
        print(_RESULT_MARK + json.dumps(measure(spec)), flush=True)
        return
    rows = []
    env = environment(args.device, args.threads)
    for spec in specs_from_args(args):
        row = run_isolated(spec, args.timeout)
        rows.append(row)
        print(format_table([row]).splitlines()[-1], flush=True)
    env['load_average_after'] = [round(x, 2) for x in os.getloadavg()]
    device = env.get('gpu') or f"CPU ({env['cpu']}, {env['threads']} threads)"
    header = (f"Device: {device}; torch {env['torch']}; load average {env['load_average']} -> "
              f"{env['load_average_after']}; {env['date']}\n"
              f"Command: python tools/benchmark.py {' '.join(argv if argv is not None else sys.argv[1:])}\n"
              "Peak MiB: live tensor memory at the peak of the first call with a newly built model (weights, "
              "and for training gradients, AdamW state and activations), above what existed before it.")
    table = format_table(rows)
    print(header)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(environment=env, header=header, rows=rows), indent=1) + '\n')
        args.out.with_suffix('.md').write_text(f'{header}\n\n{table}\n')


if __name__ == '__main__':
    main()
