"""Every attention backend against the PyTorch path on one device: the first step of ``tools/gpu_check.sh``.

The unit tests compare the backends on CPU (Triton interpreted, FlexAttention forward only); this check
runs the same comparison where the compiled kernels run, on a GPU, before any benchmark is trusted: the
forward and every gradient (q, k, v and the RPB table) of each backend of ``na1d``/``na2d``/``na3d``
(kernel, dilation, stride, causal, RPB where it is defined: stride 1, not causal) and ``bra_attention`` (routing ``topk``, key masks of padded
maps) in each dtype, against the ``'torch'`` backend run in float32 on the same inputs. The error is
``||out - ref|| / ||ref||`` (per tensor), under a bound per dtype (:data:`TOLERANCE`); a NaN or a failing
call fails too. Nothing in timm or PyTorch compares attention backends, hence this module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from ..ops import bra_attention, bra_routing, na1d, na2d, na3d
from ..ops.dispatch import unsupported_reason
from .kernel_suites.common import dtype_name

__all__ = ['NaCase', 'BraCase', 'Result', 'TOLERANCE', 'cases', 'check', 'format_results']

# ||out - ref|| / ||ref|| bounds. fp32: the kernels' dots may run in tf32 (about 3e-4, METHOD.md); half
# precisions: rounding of inputs, probabilities and accumulators (about 1e-3 for fp16, 1e-2 for bf16).
TOLERANCE = {torch.float32: 2e-3, torch.float16: 5e-3, torch.bfloat16: 3e-2}
_OPS = {1: na1d, 2: na2d, 3: na3d}


@dataclass(frozen=True)
class NaCase:
    """One neighbourhood-attention problem: ``q`` is ``(batch, *shape, heads, head_dim)``."""
    shape: tuple[int, ...]
    kernel: int | tuple[int, ...]
    dilation: int | tuple[int, ...] = 1
    stride: int | tuple[int, ...] = 1
    causal: bool | tuple[bool, ...] = False
    rpb: bool = False
    batch: int = 2
    heads: int = 2
    head_dim: int = 32
    op: str = 'na'

    @property
    def name(self) -> str:
        return (f'na{len(self.shape)}d {"x".join(map(str, self.shape))} k{self.kernel} dil{self.dilation} '
                f's{self.stride} causal{self.causal}{" rpb" if self.rpb else ""} h{self.heads} d{self.head_dim}')

    def inputs(self, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        shape = (self.batch, *self.shape, self.heads, self.head_dim)
        tensors = {name: torch.randn(shape, device=device, dtype=dtype) for name in 'qkv'}
        if self.rpb:
            kernels = self.kernel if isinstance(self.kernel, tuple) else (self.kernel,) * len(self.shape)
            tensors['rpb'] = 0.5 * torch.randn(self.heads, *(2 * k - 1 for k in kernels), device=device)
        return tensors

    def call(self, backend: str) -> Callable[..., Tensor]:
        def run(q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor] = None) -> Tensor:
            return _OPS[len(self.shape)](q, k, v, self.kernel, self.dilation, self.stride, self.causal, rpb=rpb,
                                         backend=backend)
        return run


@dataclass(frozen=True)
class BraCase:
    """One routing-attention problem on a ``height x width`` map of ``grid x grid`` regions; ``padded``
    masks the last row and column of tokens as a BiFormer auto_pad map's padding."""
    height: int
    width: int
    grid: int
    topk: int
    padded: bool = False
    batch: int = 2
    heads: int = 2
    head_dim: int = 32
    op: str = 'bra'

    @property
    def name(self) -> str:
        return (f'bra {self.height}x{self.width} grid{self.grid} topk{self.topk}{" padded" if self.padded else ""} '
                f'h{self.heads} d{self.head_dim}')

    def inputs(self, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        shape = (self.batch, self.height, self.width, self.heads, self.head_dim)
        return {name: torch.randn(shape, device=device, dtype=dtype) for name in 'qkv'}

    def call(self, backend: str) -> Callable[..., Tensor]:
        def run(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            mask = None
            if self.padded:
                mask = torch.ones(1, self.height, self.width, dtype=torch.bool, device=q.device)
                mask[:, -1], mask[:, :, -1] = False, False
            with torch.no_grad():
                index = bra_routing(q.float(), k.float(), self.grid, self.topk, token_mask=mask)
            return bra_attention(q, k, v, index, self.grid, key_mask=mask, backend=backend)
        return run


def cases(quick: bool) -> list[NaCase | BraCase]:
    """The problems checked. ``quick``: small maps and few heads (interpreted Triton on CPU); else sizes where
    the kernels run several tiles per map and the autotuned configurations differ from the interpreter's."""
    if quick:
        return [NaCase((8, 8), 3, rpb=True, batch=1, head_dim=16),
                NaCase((12,), 5, dilation=2, stride=2, causal=True, batch=1, head_dim=16),
                NaCase((3, 4, 6), (2, 3, 3), dilation=(1, 1, 2), rpb=True, batch=1, head_dim=16),
                BraCase(8, 8, 2, 3, padded=True, batch=1, head_dim=16)]
    return [NaCase((56, 56), 7, rpb=True), NaCase((28, 28), 7, dilation=4, rpb=True),
            NaCase((30, 22), (5, 7), dilation=(2, 3), stride=(2, 3), causal=(False, True), head_dim=64),
            NaCase((56, 56), 7, stride=7, head_dim=128),
            NaCase((1000,), 63, dilation=2, rpb=True), NaCase((777,), 33, stride=4, causal=True),
            NaCase((6, 14, 14), (3, 5, 5), dilation=(1, 2, 2), rpb=True),
            NaCase((8, 12, 10), (4, 3, 3), stride=(2, 1, 1), causal=(True, False, False)),
            BraCase(56, 56, 7, 1), BraCase(28, 28, 7, 4, heads=4), BraCase(32, 48, 8, 5, padded=True, head_dim=64)]


@dataclass
class Result:
    op: str
    case: str
    backend: str
    dtype: str
    tensor: str  # 'out' or 'grad <input>'
    error: Optional[float]  # ||x - ref|| / ||ref||; None: the call failed
    bound: float
    note: str = ''

    @property
    def ok(self) -> bool:
        return self.error is not None and self.error <= self.bound  # NaN compares False


def _relative_error(x: Tensor, ref: Tensor) -> float:
    diff = torch.linalg.vector_norm(x.double() - ref.double()).item()
    scale = torch.linalg.vector_norm(ref.double()).item()
    return diff / scale if scale > 0 else diff


def _run(call: Callable[..., Tensor], inputs: dict[str, Tensor], grad: Tensor, backward: bool,
         dtype: Optional[torch.dtype] = None) -> dict[str, Tensor]:
    """Output and gradients of ``call`` on copies of ``inputs`` (q, k, v cast to ``dtype`` if given)."""
    leaves = {name: (t.to(dtype) if dtype is not None and name != 'rpb' else t).detach().clone()
              .requires_grad_(backward) for name, t in inputs.items()}
    out = call(**leaves)
    results = {'out': out.detach()}
    if backward:
        out.backward(grad.to(out.dtype))
        results.update({f'grad {name}': t.grad for name, t in leaves.items()})
    return results


def check(device: torch.device, dtypes: list[torch.dtype], quick: bool = False,
          backends: tuple[str, ...] = ('triton', 'flex', 'reference'), perturb: float = 0.0) -> list[Result]:
    """Compare ``backends`` with the PyTorch path on ``device`` for every case and dtype, forward and backward
    (forward only where the backend has no backward on the device: FlexAttention on CPU). A backend that
    cannot run on the device at all (:func:`~visionattn.ops.dispatch.unsupported_reason`) is left out.

    ``perturb``: every backend's tensors are scaled by ``1 + perturb`` before the comparison, a wrong kernel
    with a relative error of ``perturb``: the self-test that the check and its callers fail on one."""
    results = []
    for case in cases(quick):
        for dtype in dtypes:
            torch.manual_seed(0)
            inputs = case.inputs(device, dtype)
            runnable = [b for b in backends if unsupported_reason(case.op, b, device, dtype, case.head_dim) is None]
            if not runnable:
                continue
            grad = torch.randn_like(case.call('torch')(**{n: t.float() for n, t in inputs.items()}))
            reference = _run(case.call('torch'), inputs, grad, backward=True, dtype=torch.float32)
            for backend in runnable:
                backward = not (backend == 'flex' and device.type == 'cpu')
                name = dtype_name(dtype)
                try:
                    got = _run(case.call(backend), inputs, grad, backward)
                except Exception as error:  # noqa: BLE001 (reported as a failure of this backend, then the rest run)
                    results.append(Result(case.op, case.name, backend, name, 'out', None, TOLERANCE[dtype],
                                          f'{type(error).__name__}: {str(error).splitlines()[0][:160]}'))
                    continue
                for tensor, value in got.items():
                    error = math.nan if value is None else _relative_error(value * (1 + perturb), reference[tensor])
                    results.append(Result(case.op, case.name, backend, name, tensor, error, TOLERANCE[dtype],
                                          'no gradient' if value is None else ''))
    return results


def format_results(results: list[Result]) -> str:
    """Markdown table: one line per (case, backend, dtype) with its largest error, failures spelled out."""
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.case, r.backend, r.dtype), []).append(r)
    lines = ['| problem | backend | dtype | tensors | max rel. error | bound | status |', '|' + '---|' * 7]
    for (case, backend, dtype), group in groups.items():
        errors = [r.error for r in group if r.error is not None]
        worst = max(errors, key=lambda e: math.inf if math.isnan(e) else e) if errors else None
        failed = [r for r in group if not r.ok]
        status = 'ok' if not failed else 'FAIL: ' + '; '.join(
            f'{r.tensor} {r.note or f"{r.error:.2e}"}' for r in failed)
        lines.append(f'| {case} | {backend} | {dtype} | {len(group)} | '
                     f'{"-" if worst is None else f"{worst:.2e}"} | {group[0].bound:.0e} | {status} |')
    return '\n'.join(lines)
