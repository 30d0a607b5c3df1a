"""Whole-model benchmark rows: images/s and peak memory of inference and of a training step, FLOPs, parameters.

Each (model, input size, attention backend) row is measured in its own Python process
(:func:`run_isolated`), so one model's allocations cannot hide another's peak, a crash or a time-out
costs only that row, and a time limit bounds every row. In that process (:func:`measure`):

1. **Peak memory** of inference and of one training step, each with its own new model: the peak of
   live tensor memory above what existed before the model was built
   (:func:`visionattn.analysis.profiling.peak_mib`). So the figure holds the weights and, for
   training, gradients, AdamW's state and activations; it leaves out the interpreter, libraries and
   allocator slack, which a process's resident set would add.
2. **FLOPs** of one forward pass at batch 1 (``Spec.flops``), counted by
   :func:`visionattn.analysis.profiling.count_flops`. Element-wise ops and normalisations are not
   counted, as in upstream papers.
3. **Throughput**: one warm-up call, then as many timed calls as fit in ``budget_s`` seconds (between
   2 and ``repeat``); the median.

``Spec.backend`` runs the row inside ``visionattn.ops.use_backend(backend)``: ``'auto'`` is what users
get; ``'reference'`` is the operators' documented reference formulation (for BiFormer upstream's
gather-based routing attention, a ``topk``-times copy of K and V as in ``bra_legacy.py``). A backend
other than ``'auto'`` only changes models that call the project's attention operators
(:func:`backend_matters`); the other families (timm's DaViT, FocalNet and HaloNet are the upstream
code) are measured with ``'auto'`` only.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import torch

from ..errors import UnknownNameError
from .profiling import count_flops, peak_mib, project_operators, time_ms

__all__ = ['MODES', 'DTYPES', 'Spec', 'measure', 'run_isolated', 'backend_matters', 'format_table']

MODES = ('infer', 'train')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
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
    backend: str = 'auto'  # the attention backend (visionattn.ops.use_backend)
    modes: tuple[str, ...] = MODES
    flops: bool = False
    repeat: int = 5
    budget_s: float = 20.0
    threads: Optional[int] = None


def _check_model(name: str) -> Any:
    """timm's pretrained config of ``name``; an unknown name is a user error."""
    import timm

    import visionattn  # noqa: F401  (registers the project's models)
    if not timm.is_model(name):
        raise UnknownNameError(f'unknown model {name!r}: see timm.list_models() after `import visionattn`')
    return timm.models.get_pretrained_cfg(name)


def backend_matters(model: str) -> bool:
    """Whether ``model`` calls one of the project's attention operators, so its speed depends on the backend."""
    import timm

    cfg = _check_model(model)
    with torch.device('meta'):
        built = timm.create_model(model, pretrained=False)
    return bool(project_operators(built.eval(), (1, *cfg.input_size)))


def _time_bounded_ms(fn: Callable[[], Any], device: torch.device, repeat: int, budget_s: float) -> float:
    """Median ms of ``fn``: one warm-up call, then 2..``repeat`` calls within ``budget_s``."""
    start = time.perf_counter()
    time_ms(fn, device, warmup=0, repeat=1)  # warm-up (allocator, oneDNN primitives, autotuning)
    first_s = time.perf_counter() - start
    calls = max(2, min(repeat, int(budget_s / max(first_s, 1e-6))))
    return time_ms(fn, device, warmup=0, repeat=calls)


def measure(spec: Spec) -> dict[str, Any]:
    """Measure one row in this process (see the module docstring); call it through :func:`run_isolated`."""
    import timm
    import torch.nn.functional as F

    from ..ops import use_backend

    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    cfg = _check_model(spec.model)
    _, default_h, default_w = cfg.input_size
    size = (spec.img_size, spec.img_size) if spec.img_size else (default_h, default_w)
    dtype = DTYPES[spec.dtype]
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def build() -> Any:
        return timm.create_model(spec.model, pretrained=False).to(device)

    def batch_of(n: int) -> torch.Tensor:
        return torch.randn(n, 3, *size, device=device)

    def inference_step(model: Any, x: torch.Tensor) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode(), autocast:
                return model(x)
        return run

    def training_step(model: Any, x: torch.Tensor) -> Callable[[], Any]:
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
    with use_backend(spec.backend):
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
    cmd = [sys.executable, '-m', __name__, json.dumps(asdict(spec))]
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
    last = err.strip().splitlines()[-1:] or ['']
    return dict(spec=asdict(spec), error=f'exit code {proc.returncode}: {last[0]}', stderr_tail=err[-3000:])


def _fmt(value: Any, spec: str) -> str:
    return '-' if value is None else format(value, spec)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of benchmark rows (GMACs = FLOPs / 2)."""
    lines = ['| model | backend | input | params (M) | GMACs | infer batch | infer img/s | infer peak MiB | '
             'train batch | train img/s | train peak MiB | note |', '|' + '---|' * 12]
    for row in rows:
        spec, infer, train = row['spec'], row.get('infer', {}), row.get('train', {})
        size = row.get('input_size', [3, spec['img_size'] or 'default'])[1:]
        params, flops = row.get('params'), row.get('flops')
        lines.append(
            f"| {spec['model']} | {spec['backend']} | {'x'.join(map(str, size))} | "
            f"{_fmt(params and params / 1e6, '.2f')} | {_fmt(flops and flops / 2e9, '.2f')} | "
            f"{infer.get('batch', '-')} | {_fmt(infer.get('img_s'), '.2f')} | {_fmt(infer.get('peak_mib'), '.0f')} | "
            f"{train.get('batch', '-')} | {_fmt(train.get('img_s'), '.2f')} | {_fmt(train.get('peak_mib'), '.0f')} | "
            f"{row.get('error', '')} |")
    return '\n'.join(lines)


if __name__ == '__main__':  # the measuring process of run_isolated
    _spec = Spec(**json.loads(sys.argv[1]))
    _spec.modes = tuple(_spec.modes)
    print(_RESULT_MARK + json.dumps(measure(_spec)), flush=True)
