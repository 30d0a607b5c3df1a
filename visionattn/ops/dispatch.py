"""Choose the backend an attention operator runs on.

NATTEN-style split: the functional ops in :mod:`visionattn.ops` are thin front-ends, and the
implementation behind each call is picked here, so models never name a backend themselves.

- ``'triton'``: the fused kernels in ``visionattn.kernels``; needs Triton and a CUDA tensor, or
  ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, which the tests use).
- ``'torch'``: plain PyTorch, runs on any device (CPU, ONNX export, gradcheck in float64).
- ``'auto'`` (default): ``'triton'`` for CUDA tensors when Triton imports, ``'torch'`` otherwise.

Override for a whole process with the ``VISIONATTN_BACKEND`` environment variable, for a block of
code with :func:`use_backend`, or per call with the op's ``backend=`` argument.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Iterator

import torch

BACKENDS = ('auto', 'triton', 'torch')

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
        raise ValueError(f'unknown attention backend {name!r}; choose one of {BACKENDS}')
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


def resolve_backend(requested: str | None, device: torch.device) -> str:
    """Turn a requested backend (``None`` means the default) into ``'triton'`` or ``'torch'``.

    Raises a clear error when ``'triton'`` is asked for but cannot run on ``device``.
    """
    name = _check_name(requested) if requested is not None else default_backend()
    triton_runs_here = triton_importable() and (device.type == 'cuda' or triton_interpreted())
    if name == 'auto':
        return 'triton' if triton_runs_here and device.type == 'cuda' else 'torch'
    if name == 'triton' and not triton_runs_here:
        why = 'Triton is not installed' if not triton_importable() else (
            f'tensors are on {device.type}, and Triton runs on CUDA tensors '
            '(or on CPU with TRITON_INTERPRET=1, for testing)')
        raise RuntimeError(f"attention backend 'triton' cannot run here: {why}. "
                           "Use backend='torch' (or 'auto').")
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
