"""Choose the backend an attention operator runs on, from one capability table.

NATTEN-style split: the functional ops in :mod:`visionattn.ops` are thin front-ends, and the
implementation behind each call is picked here, so models never name a backend themselves.

- ``'triton'``: the fused kernels in ``visionattn.kernels``; needs Triton and a CUDA tensor, or
  ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, which the tests use).
- ``'torch'``: plain PyTorch, runs on any device and floating dtype (CPU, ONNX export, gradcheck in
  float64).
- ``'reference'``: the explicit formulation the tests compare every backend against (per-query windows
  for neighbourhood attention, upstream's gather for routing attention); plain PyTorch, slow, any
  device and dtype; the naive baseline of benchmarks and pictures.
- ``'flex'``: ``torch.nn.attention.flex_attention`` with a block mask; forward and backward on CUDA,
  forward only on CPU (a backward there raises).
- ``'auto'`` (default): the first backend of :func:`auto_order` for the tensors' device whose
  capabilities admit the call, ``'torch'`` when none does. On CUDA that is the faster of ``'triton'``
  and ``'flex'`` for the op in the measured table (:func:`load_auto_table`: ``auto_backends.json``
  beside this module, written by ``tools/gpu_check.sh`` on a GPU and committed), else ``'triton'``.

What each backend of each op can run is stated once, in :data:`CAPABILITIES`. A backend asked for by
name that cannot run a call raises :class:`~visionattn.errors.UnsupportedBackendError` saying why;
under ``'auto'`` the call runs on the PyTorch path instead. This module is the only place that reads
the environment (``VISIONATTN_BACKEND``, ``VISIONATTN_AUTO_TABLE``, ``TRITON_INTERPRET``): the kernels
take what they need as arguments.

Override for a whole process with the ``VISIONATTN_BACKEND`` environment variable, for a block of
code with :func:`use_backend`, or per call with the op's ``backend=`` argument.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch

from ..errors import ConfigError, MissingFileError, UnknownNameError, UnsupportedBackendError

__all__ = ['BACKENDS', 'CAPABILITIES', 'AUTO_ORDER', 'AUTO_TABLE', 'Capability', 'select_backend',
           'unsupported_reason', 'use_backend', 'default_backend', 'auto_order', 'auto_backend', 'load_auto_table',
           'triton_importable', 'triton_interpreted', 'autocast_inputs']


@dataclass(frozen=True)
class Capability:
    """What one backend of one op runs; ``None`` means no limit."""

    devices: Optional[tuple[str, ...]] = None           # device types (``'cuda'``, ``'cpu'``, ...)
    dtypes: Optional[tuple[torch.dtype, ...]] = None    # None: any floating dtype
    max_head_dim: Optional[int] = None
    needs_triton: bool = False                          # on CPU only under Triton's interpreter


_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


CAPABILITIES: dict[str, dict[str, Capability]] = {
    'na': {  # neighbourhood attention (visionattn.ops.na1d / na2d / na3d)
        'triton': Capability(devices=('cuda',), dtypes=_KERNEL_DTYPES, max_head_dim=128, needs_triton=True),
        'torch': Capability(),
        'reference': Capability(),
        'flex': Capability(devices=('cuda', 'cpu'), dtypes=_KERNEL_DTYPES),  # CPU: forward only
    },
    'bra': {  # the token attention of bi-level routing attention (visionattn.ops.bra_attention)
        'triton': Capability(devices=('cuda',), dtypes=_KERNEL_DTYPES, max_head_dim=128, needs_triton=True),
        'torch': Capability(),
        'reference': Capability(),  # upstream's gather in plain PyTorch: the tests' truth, the benchmarks' baseline
        'flex': Capability(devices=('cuda', 'cpu'), dtypes=_KERNEL_DTYPES),  # FlexAttention; on CPU forward only
    },
}

# What 'auto' tries, in order, per device type, without a measured table; anything else runs on 'torch'.
AUTO_ORDER: dict[str, tuple[str, ...]] = {'cuda': ('triton', 'torch')}

# The measured table 'auto' orders 'triton' and 'flex' by on CUDA (see load_auto_table); absent until a GPU
# check has written one and it is committed.
AUTO_TABLE = Path(__file__).with_name('auto_backends.json')
_MEASURED = ('triton', 'flex')  # the backends the table ranks

BACKENDS = ('auto', *sorted({name for table in CAPABILITIES.values() for name in table}))

_override: list[str] = []

_TRITON_INSTALLED = importlib.util.find_spec('triton') is not None


def triton_importable() -> bool:
    """True when the ``triton`` package can be imported."""
    return _TRITON_INSTALLED


def triton_interpreted() -> bool:
    """True when Triton kernels run on Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise UnknownNameError(f'unknown attention backend {name!r}; choose one of {BACKENDS}')
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the attention ops inside the ``with`` block on backend ``name``."""
    _override.append(_check_name(name))
    try:
        yield
    finally:
        _override.pop()


def default_backend() -> str:
    """The backend asked for by :func:`use_backend` or ``VISIONATTN_BACKEND`` (``'auto'`` if neither)."""
    if _override:
        return _override[-1]
    return _check_name(os.environ.get('VISIONATTN_BACKEND', 'auto'))


def unsupported_reason(op: str, backend: str, device: torch.device, dtype: torch.dtype,
                       head_dim: int) -> Optional[str]:
    """Why ``backend`` cannot run ``op`` on these inputs, or None when it can."""
    capability = CAPABILITIES[op].get(backend)
    if capability is None:
        return f'{op} has no {backend!r} backend (it has {sorted(CAPABILITIES[op])})'
    if capability.needs_triton:
        if not triton_importable():
            return 'Triton is not installed'
        if device.type == 'cpu' and triton_interpreted():
            device = torch.device('cuda')  # the interpreter runs the kernels on CPU tensors
    if capability.devices is not None and device.type not in capability.devices:
        where = ' or '.join(capability.devices)
        hint = ' (or on CPU with TRITON_INTERPRET=1, for testing)' if capability.needs_triton else ''
        return f'tensors are on {device.type}, and it runs on {where} tensors{hint}'
    if capability.dtypes is not None and dtype not in capability.dtypes:
        names = ', '.join(str(t).removeprefix('torch.') for t in capability.dtypes)
        return f'it supports {names}, not {str(dtype).removeprefix("torch.")}'
    if capability.max_head_dim is not None and head_dim > capability.max_head_dim:
        return f'it supports head_dim <= {capability.max_head_dim}, not {head_dim}'
    return None


def load_auto_table(path: Optional[str | os.PathLike] = None) -> Optional[dict]:
    """The measured table ``'auto'`` picks from on CUDA, or None when there is none.

    ``path``: the table's file; default ``$VISIONATTN_AUTO_TABLE`` if set (then the file must exist), else
    :data:`AUTO_TABLE` (absent: None). The table, as ``tools/gpu_check.sh`` writes it: ``{"device": ...,
    "ops": {op: {backend: milliseconds or null, ...}, ...}, ...}``, the time of each backend on the same
    problems (null: it failed or did not run). Read once per path and process.
    """
    if path is None:
        named = os.environ.get('VISIONATTN_AUTO_TABLE')
        if not named:
            return _read_table(str(AUTO_TABLE), required=False)
        path = named
    return _read_table(str(path), required=True)


@functools.lru_cache(maxsize=8)
def _read_table(path: str, required: bool) -> Optional[dict]:
    if not os.path.isfile(path):
        if required:
            raise MissingFileError(f"the measured backend table {path} (VISIONATTN_AUTO_TABLE) does not exist: point "
                                   "it at the auto_backends.json a GPU check wrote, or unset it")
        return None
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f'the measured backend table {path} is not readable JSON ({err}); write it again with '
                          'tools/gpu_check.sh or remove it') from None
    ops = table.get('ops') if isinstance(table, dict) else None
    if not isinstance(ops, dict) or not all(
            isinstance(times, dict) and all(isinstance(ms, (int, float)) or ms is None for ms in times.values())
            for times in ops.values()):
        raise ConfigError(f'the measured backend table {path} must hold {{"ops": {{op: {{backend: milliseconds or '
                          f'null}}}}}}, as tools/gpu_check.sh writes it; write it again or remove it')
    return table


def auto_order(op: str, device_type: str, table: Optional[dict] = None) -> tuple[str, ...]:
    """The backends ``'auto'`` tries for ``op`` on ``device_type``, in order (then ``'torch'``).

    On CUDA with a measured ``table`` (default :func:`load_auto_table`) that times ``op``: the measured
    backends fastest first (unmeasured or failed ones after them), else :data:`AUTO_ORDER`."""
    default = AUTO_ORDER.get(device_type, ())
    if device_type != 'cuda':
        return default
    times = ((table if table is not None else load_auto_table()) or {}).get('ops', {}).get(op)
    if not times:
        return default
    ranked = sorted(_MEASURED, key=lambda name: (times.get(name) is None, times.get(name) or math.inf,
                                                 _MEASURED.index(name)))
    return (*ranked, *(name for name in default if name not in ranked))


def auto_backend(op: str, device: torch.device, dtype: torch.dtype, head_dim: int,
                 table: Optional[dict] = None) -> str:
    """What ``'auto'`` runs ``op`` on for inputs on ``device`` of ``dtype`` and ``head_dim``: the first backend of
    :func:`auto_order` that can run them, else ``'torch'``."""
    for candidate in auto_order(op, device.type, table):
        if unsupported_reason(op, candidate, device, dtype, head_dim) is None:
            return candidate
    return 'torch'


def select_backend(op: str, requested: Optional[str], q: torch.Tensor, head_dim: Optional[int] = None) -> str:
    """The backend that runs ``op`` on inputs like ``q`` (``(..., heads, head_dim)``).

    ``requested`` None means :func:`default_backend`. ``'auto'`` gives :func:`auto_backend`; a backend
    named explicitly is returned if it can run the call and raises :class:`UnsupportedBackendError`
    otherwise.
    """
    name = _check_name(requested) if requested is not None else default_backend()
    head_dim = q.shape[-1] if head_dim is None else head_dim
    if name == 'auto':
        return auto_backend(op, q.device, q.dtype, head_dim)
    reason = unsupported_reason(op, name, q.device, q.dtype, head_dim)
    if reason is not None:
        raise UnsupportedBackendError(f"attention backend {name!r} cannot run {op} here: {reason}. "
                                      "Use backend='auto' (or 'torch').")
    return name


def autocast_inputs(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast attention inputs to the autocast dtype when autocast is on for their device.

    Custom ops are opaque to autocast, so the front-ends cast for them. float64 stays float64, and
    devices without autocast (e.g. ``meta``) are left alone.
    """
    device_type = tensors[0].device.type
    if (tensors[0].dtype == torch.float64 or not torch.amp.is_autocast_available(device_type)
            or not torch.is_autocast_enabled(device_type)):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) for t in tensors)
