"""Export models: ONNX graphs, torch.export programs, and trained checkpoints back to timm.

    python tools/export.py onnx MODEL --out model.onnx [--checkpoint FILE] [--input-size H W] [--dynamic AXIS ...]
    python tools/export.py program MODEL --out model.pt2 [--checkpoint FILE] [--input-size H W] [--dynamic AXIS ...]
    python tools/export.py timm CONFIG CHECKPOINT [--part backbone|classifier] [--out weights.safetensors] [--hub-dir DIR]
    python tools/export.py check [--models NAME ...] [--out benchmarks/onnx.md] [--resume]

MODEL is a timm model name (the project's models after ``import visionattn``) or a timm hub folder
(``local-dir:DIR``); ``--checkpoint`` is a weights file or a checkpoint saved by ``tools/train.py`` (its timm
model is taken out, see ``timm`` below), read with safe loading and checked strictly (``--non-strict`` loads
what fits). ``--model-kwargs`` are further ``timm.create_model`` arguments.

- ``onnx``: torch.onnx's dynamo exporter at its current opset (``--opset``); ``--dynamic`` names the input
  axes to keep dynamic (default batch, height and width; those the model fixes are reported), ``--static``
  keeps none. The graph is then run in onnxruntime and compared with PyTorch on a random input of the
  export size (``--check-size H W`` adds another size; ``--no-check`` skips it).
- ``program``: a ``torch.export`` program (``.pt2``); load it with ``torch.export.load`` after
  ``import visionattn``, which registers the attention operators it calls.
- ``timm``: the timm model of a ``tools/train.py`` checkpoint of CONFIG: the backbone of a segmentor or
  detector (``visionattn.TimmBackbone``), or a whole classifier (``TimmClassifier``; mmpretrain's
  ``ImageClassifier`` with a TimmBackbone, pooling and a linear head). ``--out`` writes the trained tensors
  under timm's keys (``pretrained_cfg_overlay=dict(file=...)``; ``visionattn.TimmBackbone(pretrained=...)``),
  ``--hub-dir`` a timm hub folder (``timm.create_model('local-dir:DIR', pretrained=True)``; a backbone's folder
  gives the features model it was trained as).
- ``check``: the table of every registered model (or ``--models``): ONNX export and its largest
  difference from PyTorch at two input sizes, each model in its own process
  (:mod:`visionattn.analysis.export_check`). The table is rewritten after every model; ``--resume`` keeps the
  rows an earlier run wrote to ``--out`` (each row names the commit it was checked at) and checks the rest.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from mmengine.config import DictAction

from . import add_debug_argument, cli_main, json_object
from ..errors import ConfigError, UnknownNameError


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help="timm model name, or a timm hub folder as 'local-dir:DIR'")
    parser.add_argument('--out', type=Path, required=True, help='file to write')
    parser.add_argument('--checkpoint', help='weights file, or a checkpoint saved by tools/train.py')
    parser.add_argument('--non-strict', action='store_true',
                        help='load only the checkpoint tensors that fit the model (default: stop on a mismatch)')
    parser.add_argument('--model-kwargs', default='{}', help='JSON dict of further timm.create_model arguments')
    parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                        help="example input's height and width (default: the model's input size)")
    parser.add_argument('--batch', type=int, default=2, help='example batch (default 2: an axis of size 1 is fixed)')
    axes = parser.add_mutually_exclusive_group()
    axes.add_argument('--dynamic', nargs='+', default=['batch', 'height', 'width'],
                      choices=['batch', 'height', 'width'], help='input axes kept dynamic where the model allows')
    axes.add_argument('--static', action='store_true', help='no dynamic axis: the graph takes the example shape only')
    add_debug_argument(parser)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('onnx', help='ONNX graph (dynamo exporter), checked in onnxruntime')
    _model_arguments(p)
    p.add_argument('--opset', type=int, help="ONNX opset (default: the exporter's current one)")
    p.add_argument('--check-size', type=int, nargs=2, metavar=('H', 'W'), help='also compare at this input size')
    p.add_argument('--no-check', action='store_true', help='do not run the graph in onnxruntime')
    p = sub.add_parser('program', help='torch.export program (.pt2)')
    _model_arguments(p)
    p = sub.add_parser('timm', help='the timm model of a tools/train.py checkpoint: state dict or hub folder')
    p.add_argument('config', help='the config the checkpoint was trained with (a file or a shipped config name)')
    p.add_argument('checkpoint', help='checkpoint saved by tools/train.py')
    p.add_argument('--part', choices=['backbone', 'classifier'],
                   help='default: classifier for classification configs, backbone otherwise')
    p.add_argument('--out', type=Path, help="trained tensors under timm's keys (.safetensors)")
    p.add_argument('--hub-dir', type=Path, help="timm's hub layout (config.json, model.safetensors)")
    p.add_argument('--non-strict', action='store_true',
                   help='a checkpoint that does not fit the config, or backbone layers timm has no place for: '
                   'export what fits (default: stop)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                   help='override config entries (keys are checked)')
    add_debug_argument(p)
    p = sub.add_parser('check', help='ONNX export of every registered model against PyTorch: a table')
    p.add_argument('--models', nargs='+', help="model names (default: every model the project registers in timm, "
                   "visionattn.timm_suite.project_models)")
    p.add_argument('--out', type=Path, help='markdown table to write (and a .json beside it)')
    p.add_argument('--timeout', type=float, default=3600, help='seconds allowed per model (default 3600)')
    p.add_argument('--threads', type=int, help='OMP_NUM_THREADS of each model process')
    p.add_argument('--jobs', type=int, default=1, help='models checked at once, each in its own process (default 1)')
    p.add_argument('--resume', action='store_true',
                   help='keep the rows of the models already in --out (its .json) and check only the others; delete '
                        'a row from the .json to check that model again')
    add_debug_argument(p)
    args = parser.parse_args(argv)
    if args.command == 'check' and args.resume and args.out is None:
        parser.error('check --resume: give --out, the table to continue')
    if args.command == 'timm' and args.out is None and args.hub_dir is None:
        parser.error('timm: give --out FILE.safetensors, --hub-dir DIR, or both')
    return args


def _build(args: argparse.Namespace) -> Any:
    import timm

    import visionattn  # noqa: F401  (registers the project's models)
    from ..weights import create_model_with_weights
    kwargs = json_object(args.model_kwargs, '--model-kwargs')
    name = args.model
    if not name.startswith(('local-dir:', 'hf-hub:')) and not timm.is_model(name):
        raise UnknownNameError(f"unknown timm model {name!r}: see timm.list_models() after `import visionattn`, or "
                               "give a hub folder as 'local-dir:DIR'")
    if args.checkpoint:
        model = create_model_with_weights(name, args.checkpoint, strict=not args.non_strict,
                                          non_strict_option='--non-strict', **kwargs)
    else:
        model = timm.create_model(name, pretrained=name.startswith(('local-dir:', 'hf-hub:')), **kwargs)
    return model.eval()


def _example(args: argparse.Namespace, model: Any) -> Any:
    from ..export import example_input
    channels, height, width = model.pretrained_cfg.get('input_size', (3, 224, 224))
    if args.input_size:
        height, width = args.input_size
    if args.batch < 1:
        raise ConfigError(f'--batch must be at least 1, got {args.batch}')
    return example_input((getattr(model, 'in_chans', channels), height, width), batch=args.batch)


def _dynamic(args: argparse.Namespace) -> list[str]:
    return [] if args.static else args.dynamic


def _report_axes(exported: Any, asked: list[str]) -> None:
    fixed = [axis for axis in asked if axis not in exported.dynamic_axes]
    shape = 'x'.join(str(s) for s in exported.input_shape)
    print(f'wrote {exported.path}: input {shape}; dynamic axes: {", ".join(exported.dynamic_axes) or "none"}'
          + (f' (the model fixes {", ".join(fixed)})' if fixed else ''))


def _onnx(args: argparse.Namespace) -> None:
    from ..export import example_input, export_onnx, onnx_max_error, within_tolerance
    model = _build(args)
    x = _example(args, model)
    exported = export_onnx(model, x, args.out, dynamic=_dynamic(args), opset=args.opset)
    _report_axes(exported, _dynamic(args))
    if args.no_check:
        return
    sizes = [tuple(x.shape[2:])] + ([tuple(args.check_size)] if args.check_size else [])
    if len(sizes) > 1 and not {'height', 'width'} <= set(exported.dynamic_axes):
        raise ConfigError(f'--check-size {sizes[1][0]} {sizes[1][1]}: the graph takes {sizes[0][0]}x{sizes[0][1]} '
                          'inputs only (its height and width are fixed); export at that size instead')
    failed = []
    for size in sizes:
        error, scale = onnx_max_error(args.out, model, example_input((x.shape[1], *size), batch=x.shape[0], seed=1))
        ok = within_tolerance(error, scale)
        print(f'onnxruntime vs PyTorch at {size[0]}x{size[1]}: max difference {error:.2e} (outputs up to '
              f'{scale:.2g}): {"within fp32 tolerance" if ok else "TOO LARGE"}')
        if not ok:
            failed.append(size)
    if failed:
        raise SystemExit(1)


def _program(args: argparse.Namespace) -> None:
    from ..export import export_program
    model = _build(args)
    _, exported = export_program(model, _example(args, model), args.out, dynamic=_dynamic(args))
    _report_axes(exported, _dynamic(args))
    print("load it with: import visionattn; program = torch.export.load(path); program.module()(x)")


def _timm(args: argparse.Namespace) -> None:
    from ..convert import timm_model_from_training, write_timm_weights
    exported = timm_model_from_training(args.config, Path(args.checkpoint), part=args.part,
                                        strict=not args.non_strict, cfg_options=args.cfg_options)
    write_timm_weights(exported, args.out, args.hub_dir, source=Path(args.checkpoint).name)
    values = sum(v.numel() for v in exported.trained.values())
    what = f'{exported.model_name} {exported.part} ({len(exported.trained)} tensors, {values / 1e6:.2f}M values)'
    kwargs = ''.join(f', {k}={v!r}' for k, v in exported.model_args.items())
    features = (f', features_only=True, out_indices={list(exported.out_indices)}'
                if exported.part == 'backbone' and exported.out_indices else '')
    if args.out:
        print(f'wrote {args.out}: {what}')
        print(f"load it with: timm.create_model('{exported.model_name}', pretrained=True, "
              f"pretrained_cfg_overlay=dict(file='{args.out}'){kwargs}{features})")
    if args.hub_dir:
        print(f'wrote {args.hub_dir}: {what}')
        print(f"load it with: timm.create_model('local-dir:{args.hub_dir}', pretrained=True)")
    if exported.untrained:
        print(f'note: {len(exported.untrained)} tensors of the headless {exported.model_name} were not part of the '
              f'trained backbone ({", ".join(exported.untrained[:4])}{", ..." if len(exported.untrained) > 4 else ""})'
              + ('; the hub folder holds their initial values and loads as the features model' if args.hub_dir
                 else ''))


def _provenance(argv: list[str], threads: Optional[int]) -> str:
    """The header of a committed table: command, date, machine, and the commit it measured."""
    import platform
    from importlib.metadata import version

    import torch

    from ..analysis.profiling import code_commit, cpu_name, load_average
    versions = ', '.join(f'{name} {version(name)}' for name in ('torch', 'onnx', 'onnxscript', 'onnxruntime'))
    return (f'Command: `python tools/export.py {" ".join(argv)}`\n'
            f'Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}; commit {code_commit()}\n'
            f'Machine: {cpu_name()}, {os.cpu_count()} cores (shared, loaded; load average {load_average()}), '
            f'{threads or torch.get_num_threads()} thread(s) per model process; Python {platform.python_version()}, '
            f'{versions}\n')


def _families_first(names: list[str]) -> list[str]:
    """The smallest model of each family first, then the next smallest of each, and so on (parameter counts of
    models built on the meta device: nothing allocated), so that a run stopped early has covered every family."""
    import timm
    import torch

    from ..timm_suite import model_family

    def parameters(name: str) -> int:
        with torch.device('meta'):
            return sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
    rank: dict[str, int] = {}
    by_size = sorted(names, key=parameters)
    order = {}
    for name in by_size:
        family = model_family(name)
        rank[family] = rank.get(family, -1) + 1
        order[name] = (rank[family], by_size.index(name))
    return sorted(names, key=order.__getitem__)


def _check(args: argparse.Namespace, argv: list[str]) -> None:
    from ..analysis.export_check import format_table, run_isolated
    from ..analysis.profiling import code_commit
    from ..timm_suite import project_models
    names = _families_first(args.models or project_models())
    header = _provenance(argv, args.threads)
    rows = _earlier_rows(args.out, names) if args.resume else []
    if rows:
        header += (f'Kept from earlier runs (--resume): {len(rows)} rows, checked at commit(s) '
                   f'{", ".join(sorted({row["commit"] for row in rows}))}\n')
        print(f'{args.out}: keeping the rows of {len(rows)} models; checking {len(names) - len(rows)}')
    start = time.time()

    def write(done: bool) -> None:
        """The table so far (rewritten after every row, so a stopped run leaves what it measured)."""
        failed = [row['model'] for row in rows if not row.get('ok')]
        fixed = [row['model'] for row in rows if row.get('fixed_size_only')]
        summary = (f'{len(rows) - len(failed)} of {len(rows)} models export and match PyTorch'
                   + (f' ({len(fixed)} with fixed height and width only: {", ".join(fixed)})' if fixed else '')
                   + (f'; failing: {", ".join(failed)}' if failed else '')
                   + f' ({(time.time() - start) / 60:.0f} min)'
                   + ('' if done else f'; not checked yet: {", ".join(n for n in names if n not in checked)}'))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.with_suffix('.json').write_text(json.dumps(dict(header=header, rows=rows), indent=1) + '\n')
            args.out.write_text(f'# ONNX export of every model\n\n{header}\n{EXPLANATION}\n\n'
                                f'{format_table(rows)}\n\n{summary}\n')
        if done:
            print(summary + (f'\nwrote {args.out}' if args.out else ''))

    checked = {row['model'] for row in rows}
    with ThreadPoolExecutor(args.jobs) as pool:  # each row is its own process
        todo = [name for name in names if name not in checked]
        for row in pool.map(lambda name: run_isolated(name, args.timeout, args.threads), todo):
            row.setdefault('commit', code_commit())  # a process that reported nothing (timed out, crashed)
            rows.append(row)
            checked.add(row['model'])
            print(format_table([row]).splitlines()[-1], flush=True)
            write(done=False)
    write(done=True)
    if any(not row.get('ok') for row in rows):
        raise SystemExit(1)


def _earlier_rows(out: Path, names: list[str]) -> list[dict[str, Any]]:
    """The rows of ``names`` in the table an earlier ``check`` wrote to ``out`` (its .json), each with the commit it
    was checked at (older tables kept it only in their header)."""
    import re
    saved = out.with_suffix('.json')
    if not saved.is_file():
        raise ConfigError(f'check --resume: {saved} does not exist; run without --resume to start the table')
    table = json.loads(saved.read_text())
    found = re.search(r'commit (\S+)', table.get('header', ''))
    rows = [dict(row) for row in table['rows'] if row['model'] in names]
    for row in rows:
        row.setdefault('commit', found.group(1) if found else 'unknown')
    return rows


EXPLANATION = ('Each model (random weights at timm\'s initialisation, eval mode) is exported by the dynamo exporter at its '
               'current opset (without onnxscript\'s optimizer) with batch, height and width dynamic where the model '
               'allows (again at the second size if it fixes height or width), then run in onnxruntime (CPU, batch 1) '
               'at its default input size and at a second size and compared with eager PyTorch: max error is the '
               'largest absolute difference of the outputs, output scale the largest absolute output; export ok means '
               'within fp32 tolerance (difference <= 1e-6 + 1e-4 x output scale) at both sizes; "fixed size only": the graph '
               'with dynamic height and width failed (the note says how) and graphs exported at each size match. '
               'Each model runs in '
               'its own process, the smallest model of each family first (visionattn.analysis.export_check).')


@cli_main
def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.command == 'check':
        _check(args, argv)
    else:
        dict(onnx=_onnx, program=_program, timm=_timm)[args.command](args)


if __name__ == '__main__':
    main()
