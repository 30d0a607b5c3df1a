"""Whether every registered model exports to ONNX and computes what PyTorch computes: one table row per model.

For each model (:func:`check_model`, random weights at timm's initialisation, eval mode): the ONNX graph is
exported once at the model's default input size with batch, height and width dynamic where the model allows
(:func:`visionattn.export.export_onnx`); it runs in onnxruntime at the default size and at a second size
of another height and width (:func:`second_size`), batch 1, against eager PyTorch. A model whose height or
width the export fixed is exported again at the second size; a dynamic graph that is wrong or fails at a size
is reported, and the model exported again with fixed height and width at each size. The row records what stayed dynamic, the time
of each export and the largest difference from PyTorch at each size, and whether it is within fp32
tolerance (:func:`visionattn.export.within_tolerance`).

Each row runs in its own Python process with a time limit (:func:`run_isolated`), as the benchmarks do, so
one model's failure or memory costs only its row.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Optional

__all__ = ['second_size', 'check_model', 'run_isolated', 'format_table']

_RESULT_MARK = '@@export-check-result@@ '


def second_size(model_name: str, size: tuple[int, int]) -> tuple[int, int]:
    """Another (height, width) the model accepts: one step of its input multiple (at least 32, the usual
    largest stride) taller and one narrower, so both axes change and differ from each other."""
    from ..mm.backbones import required_input_multiple
    step = math.lcm(32, required_input_multiple(model_name))
    height, width = size
    return height + step, (width - step if width > step else width + 2 * step)


def _compare(model_name: str, model: Any, out_dir: Path, channels: int, sizes: list[tuple[int, int]],
             dynamic: tuple[str, ...], optimize: bool) -> dict[str, Any]:
    """Export (once if height and width stay dynamic, else at each size) and compare at each size."""
    import time

    from ..export import example_input, export_onnx, onnx_max_error, within_tolerance
    result: dict[str, Any] = dict(export_s=[], max_error=[], output_scale=[])
    exported = None
    for size in sizes:
        if exported is None or not {'height', 'width'} <= set(exported.dynamic_axes):
            start = time.perf_counter()
            path = Path(out_dir) / f'{model_name}_{size[0]}x{size[1]}_{"_".join(dynamic) or "static"}.onnx'
            try:
                exported = export_onnx(model, example_input((channels, *size)), path, dynamic=dynamic,
                                       optimize=optimize)
            except Exception as err:  # the exporter failed: with dynamic sizes, check_model tries fixed ones
                if 'height' not in dynamic:
                    raise
                cause = ' '.join(str(err).split('## Exception summary')[-1].split())[:200]
                return dict(result, ok=False, error=f'export at {size[0]}x{size[1]}: {type(err).__name__}: {cause}')
            result['export_s'].append(round(time.perf_counter() - start, 1))
            result.setdefault('dynamic_axes', list(exported.dynamic_axes))
        try:
            error, scale = onnx_max_error(exported.path, model, example_input((channels, *size), batch=1, seed=1))
        except Exception as err:  # onnxruntime cannot run the graph at this size: the row says which
            result.update(ok=False, error=f'onnxruntime at {size[0]}x{size[1]}: {type(err).__name__}: '
                          f'{str(err).splitlines()[0][:200]}')
            return result
        result['max_error'].append(error)
        result['output_scale'].append(scale)
        if not within_tolerance(error, scale):
            result['error'] = f'at {size[0]}x{size[1]}: max error {error:.1e} (outputs up to {scale:.2g})'
    result['ok'] = all(within_tolerance(e, s) for e, s in zip(result['max_error'], result['output_scale']))
    return result


def check_model(model_name: str, out_dir: Path, sizes: Optional[list[tuple[int, int]]] = None,
                optimize: bool = False, **model_kwargs: Any) -> dict[str, Any]:
    """Export ``model_name`` to ONNX and compare it with PyTorch at two input sizes (the module docstring).

    When the export with dynamic height and width fails, or its graph is wrong or does not run at a size, the
    model is exported
    again with only the batch dynamic, at each size: the row then says ``fixed size only`` and why the
    dynamic graph failed (``dynamic_failure``).

    ``optimize``: run onnxscript's graph optimizer after the export (off by default: on large models it takes
    longer than the export, and it only rewrites the graph the exporter made, which is what is checked)."""
    import timm
    import torch

    import visionattn  # noqa: F401  (registers the project's models)
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, **model_kwargs).eval()
    channels, height, width = model.pretrained_cfg['input_size']
    sizes = sizes or [(height, width), second_size(model_name, (height, width))]
    row: dict[str, Any] = dict(model=model_name, params=sum(p.numel() for p in model.parameters()),
                               sizes=[list(s) for s in sizes])
    dynamic = _compare(model_name, model, out_dir, channels, sizes, ('batch', 'height', 'width'), optimize)
    if dynamic['ok']:
        return dict(row, **dynamic)
    fixed = _compare(model_name, model, out_dir, channels, sizes, ('batch',), optimize)
    row.update(fixed, dynamic_failure=f'dynamic height and width: {dynamic["error"]}',
               export_s=dynamic['export_s'] + fixed['export_s'], fixed_size_only=fixed['ok'])
    return row


def run_isolated(model_name: str, timeout_s: float, threads: Optional[int] = None) -> dict[str, Any]:
    """:func:`check_model` in a fresh Python process; ``{'error': ...}`` if it fails or runs out of time."""
    env = dict(os.environ, **({'OMP_NUM_THREADS': str(threads)} if threads else {}))
    with tempfile.TemporaryDirectory(prefix='export-check-') as out_dir:
        cmd = [sys.executable, '-m', __name__, model_name, out_dir]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=env)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return dict(model=model_name, ok=False, error=f'timed out after {timeout_s:g} s')
    wall_s = round(time.perf_counter() - start, 1)
    for line in reversed(out.splitlines()):
        if line.startswith(_RESULT_MARK):
            return dict(json.loads(line[len(_RESULT_MARK):]), wall_s=wall_s)
    last = err.strip().splitlines()[-1:] or ['']
    return dict(model=model_name, ok=False, wall_s=wall_s, error=f'exit code {proc.returncode}: {last[0][:300]}')


def _sizes(row: dict[str, Any]) -> str:
    return ', '.join(f'{h}x{w}' for h, w in row.get('sizes', []))


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`check_model` rows."""
    lines = ['| model | params (M) | export ok | dynamic axes | input sizes | max error (size 1, size 2) | '
             'output scale | exports (s) | row time (s) | commit | note |', '|' + '---|' * 11]
    for row in rows:
        errors = ', '.join(f'{e:.1e}' for e in row.get('max_error', []))
        scale = max(row.get('output_scale', [0]) or [0])
        dynamic = ', '.join(row.get('dynamic_axes', [])) or ('none' if 'dynamic_axes' in row else '-')
        params = f"{row['params'] / 1e6:.2f}" if 'params' in row else '-'
        exports = ' + '.join(f'{s:g}' for s in row.get('export_s', [])) or '-'
        ok = 'fixed size only' if row.get('fixed_size_only') else 'yes' if row.get('ok') else 'NO'
        note = '; '.join(filter(None, (row.get('dynamic_failure', ''), row.get('error', '') if not row.get('ok')
                                       else '')))
        lines.append(f"| {row['model']} | {params} | {ok} | {dynamic} | {_sizes(row)} | "
                     f"{errors or '-'} | {scale:.2g} | {exports} | {row.get('wall_s', '-')} | "
                     f"{row.get('commit', '-')} | {note} |")
    return '\n'.join(lines)


if __name__ == '__main__':  # the process of run_isolated
    from .profiling import code_commit
    _commit = code_commit()  # the code this process imported, whatever is committed while it runs
    try:
        _row = check_model(sys.argv[1], Path(sys.argv[2]))
    except Exception as _err:  # a failed export is a row of the table, with its reason
        traceback.print_exc()
        _row = dict(model=sys.argv[1], ok=False, error=f'{type(_err).__name__}: {str(_err).splitlines()[0][:300]}'
                    if str(_err) else type(_err).__name__)
    print(_RESULT_MARK + json.dumps(dict(_row, commit=_commit)), flush=True)
