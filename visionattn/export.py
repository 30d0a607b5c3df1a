"""Exporting models: ONNX graphs and ``torch.export`` programs, with dynamic axes, checked against PyTorch.

Why our own: ``torch.onnx.export(..., dynamo=True)`` and ``torch.export.export`` do the work, but a user
has to pick how to declare dynamic axes (``Dim.DYNAMIC`` fails when a model specialises an axis, e.g. a
batch of 1 or a model that needs a fixed size), find out afterwards which axes stayed dynamic, and run
onnxruntime to see whether the graph computes what the model does. Here:

- :func:`export_onnx` / :func:`export_program` declare the requested axes (``batch``, ``height``,
  ``width``) as ``Dim.AUTO``: dynamic where the model allows it, fixed where it does not; the result
  says which axes are dynamic (:class:`Exported`), so a caller knows whether one graph serves other input
  sizes. The example batch is 2, because torch.export fixes axes of size 1.
- The project's attention operators are ``torch.library`` custom ops: a ``torch.export`` program keeps
  them (load it after ``import visionattn``), ONNX export traces their PyTorch path into standard
  operators (see :mod:`visionattn.ops.na`, :mod:`visionattn.ops.routing`).
- :func:`onnx_max_error` runs an ONNX file in onnxruntime and returns its largest difference from the
  PyTorch model on the same inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from .errors import ConfigError

__all__ = ['AXES', 'Exported', 'example_input', 'export_onnx', 'export_program', 'onnx_input_shape',
           'onnx_max_error', 'within_tolerance', 'TOLERANCE']

AXES = ('batch', 'height', 'width')  # the input axes that may be dynamic, in NCHW order
_AXIS_INDEX = dict(batch=0, height=2, width=3)
EXAMPLE_BATCH = 2  # torch.export fixes an axis whose example size is 1
# fp32 tolerance of an exported graph against eager PyTorch: differences come from the order of
# floating-point sums (another matmul/conv algorithm, fused ops), which grow with the output's scale
# (rtol, of the largest output); atol is small, as randomly initialised heads give outputs of 1e-4.
TOLERANCE = dict(atol=1e-6, rtol=1e-4)


@dataclass(frozen=True)
class Exported:
    """What an export produced: where, for which input shape, and which axes stayed dynamic."""
    path: Optional[Path]
    input_shape: tuple[int, ...]  # the example input (batch, channels, height, width)
    dynamic_axes: tuple[str, ...]  # requested axes the graph keeps dynamic; the others are fixed


def example_input(input_size: Sequence[int], batch: int = EXAMPLE_BATCH, seed: int = 0) -> torch.Tensor:
    """A random ``(batch, *input_size)`` float32 input (fixed seed, so checks repeat)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *input_size, generator=generator)


def _dynamic_shapes(axes: Sequence[str]) -> Optional[tuple[dict[int, Any]]]:
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        raise ConfigError(f'unknown dynamic axes {unknown}: choose from {list(AXES)}')
    if not axes:
        return None
    return ({_AXIS_INDEX[axis]: torch.export.Dim.AUTO for axis in axes},)


def _kept_dynamic(program: torch.export.ExportedProgram, axes: Sequence[str]) -> tuple[str, ...]:
    """The requested axes whose size in the program's input is symbolic."""
    placeholder = next(node for node in program.graph.nodes if node.op == 'placeholder'
                       and node.name in program.graph_signature.user_inputs)
    shape = placeholder.meta['val'].shape
    return tuple(axis for axis in axes if not isinstance(shape[_AXIS_INDEX[axis]], int))


def _eval(model: nn.Module) -> nn.Module:
    if model.training:
        raise ConfigError('export a model in eval mode (model.eval()): training-mode layers (dropout, batch '
                          'statistics) do not belong in an inference graph')
    return model


def export_program(model: nn.Module, x: torch.Tensor, path: Optional[Path] = None,
                   dynamic: Sequence[str] = AXES) -> tuple[torch.export.ExportedProgram, Exported]:
    """``torch.export`` of ``model`` on the example ``x``, the ``dynamic`` axes dynamic where the model
    allows; saved to ``path`` (``.pt2``, ``torch.export.load`` after ``import visionattn``) if given."""
    program = torch.export.export(_eval(model), (x,), dynamic_shapes=_dynamic_shapes(dynamic), strict=False)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, str(path))
    return program, Exported(path, tuple(x.shape), _kept_dynamic(program, dynamic))


def export_onnx(model: nn.Module, x: torch.Tensor, path: Path, dynamic: Sequence[str] = AXES,
                opset: Optional[int] = None, optimize: bool = True) -> Exported:
    """ONNX graph of ``model`` (the dynamo exporter, its current opset unless ``opset``) written to ``path``.

    ``dynamic`` axes stay dynamic where the model allows it (:attr:`Exported.dynamic_axes` says which did).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(_eval(model), (x,), dynamo=True, dynamic_shapes=_dynamic_shapes(dynamic),
                                opset_version=opset, optimize=optimize, verbose=False,
                                input_names=['images'], output_names=['output'])
    program.save(str(path))
    return Exported(Path(path), tuple(x.shape), _kept_dynamic(program.exported_program, dynamic))


def onnx_input_shape(path: Path) -> tuple[int | str, ...]:
    """The first input's shape in an ONNX file: sizes, or names of dynamic axes."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField('dim_value') else d.dim_param for d in dims)


def onnx_max_error(path: Path, model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """``(max |onnxruntime - PyTorch|, max |PyTorch|)`` of ``model`` and the ONNX file on input ``x``."""
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x)
    wanted = [want] if isinstance(want, torch.Tensor) else list(want)
    if len(got) != len(wanted):
        raise RuntimeError(f'{path} has {len(got)} outputs, the model {len(wanted)}')
    error = max(float((torch.from_numpy(g) - w).abs().max()) for g, w in zip(got, wanted))
    scale = max(float(w.abs().max()) for w in wanted)
    return error, scale


def within_tolerance(error: float, scale: float) -> bool:
    """Whether an export's difference from PyTorch is a floating-point rounding difference (:data:`TOLERANCE`)."""
    return math.isfinite(error) and error <= TOLERANCE['atol'] + TOLERANCE['rtol'] * scale
