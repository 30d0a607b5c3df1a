"""Convert an official checkpoint of any registered model family into a safetensors file for timm.

The architecture comes either from a timm entry point of the project (``--model``, optionally with
``--model-kwargs``) or from the keyword arguments of the upstream constructor (``--upstream-kwargs``,
for checkpoints of upstream configurations trained by users). Every tensor of the checkpoint must
land in the model and every tensor of the model must come from the checkpoint; otherwise the tool
stops and names the keys. Examples::

    python tools/convert_checkpoint.py --family nat --model nat_tiny nat_tiny.pth nat_tiny.safetensors
    python tools/convert_checkpoint.py --family dinat --upstream-kwargs '{"embed_dim": 64, "mlp_ratio": 3,
        "depths": [3, 4, 18, 5], "num_heads": [2, 4, 8, 16], "dilations": [...]}' mine.pth mine.safetensors
    python tools/convert_checkpoint.py --family nat --upstream-kwargs '{..., "out_indices": [0, 1, 2, 3]}' \\
        mask_rcnn_nat_tiny.pth nat_tiny_coco_backbone.safetensors   # an mmdet/mmseg model: its backbone

The output loads with timm's own mechanism (a dense-prediction backbone with ``features_only=True,
stage_norms=True``, or as ``pretrained=<file>`` of ``visionattn.TimmBackbone``)::

    model = timm.create_model('nat_tiny', pretrained=True, pretrained_cfg_overlay=dict(file='nat_tiny.safetensors'))

Families: ``visionattn.families()``. Input: ``.pth``/``.pt`` (read with ``weights_only=True``; bare or
wrapped in ``model``/``state_dict``) or ``.safetensors``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import timm
import torch
from safetensors.torch import save_file
from torch import nn

import visionattn
from visionattn.convert import convert_state_dict, from_official, load_checkpoint_file


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f'{option}: not valid JSON ({err}); give an object, e.g. \'{{"depths": [3, 4, 18, 5]}}\'')
    if not isinstance(value, dict):
        raise SystemExit(f'{option}: give a JSON object of keyword arguments, got {type(value).__name__}')
    return value


def _model_from_entry_point(family: str, name: str, model_kwargs: dict[str, Any],
                            state_dict: dict[str, torch.Tensor]) -> nn.Module:
    if not timm.is_model(name):
        raise SystemExit(f'--model {name!r} is not a timm model; names of the family: '
                         f"timm.list_models('{family}*') after `import visionattn`")
    advice = ('Pick the entry point (and --model-kwargs) of the checkpoint, or give the upstream constructor '
              'arguments with --upstream-kwargs (for detection/segmentation checkpoints: the backbone dict of the '
              'upstream config, with its out_indices).')
    model = timm.create_model(name, pretrained=False, **model_kwargs)
    try:
        result = model.load_state_dict(convert_state_dict(family, state_dict, model), strict=False)
    except (RuntimeError, ValueError) as err:
        raise SystemExit(f'the checkpoint does not match {name} {model_kwargs or ""}: {err}\n{advice}')
    if result.missing_keys or result.unexpected_keys:
        raise SystemExit(
            f'the checkpoint does not match {name} {model_kwargs or ""}: missing {result.missing_keys[:8]} '
            f'({len(result.missing_keys)}), unexpected {result.unexpected_keys[:8]} ({len(result.unexpected_keys)}). '
            + advice)
    return model


def convert(family: str, source: Path, output: Path, model: Optional[str] = None,
            model_kwargs: Optional[dict[str, Any]] = None,
            upstream_kwargs: Optional[dict[str, Any]] = None) -> dict[str, torch.Tensor]:
    """Convert ``source`` with ``family``'s filter into ``output`` (safetensors); returns the tensors written."""
    if family not in visionattn.families():
        raise SystemExit(f'--family {family!r} is not registered; registered families: {visionattn.families()}')
    if (model is None) == (upstream_kwargs is None):
        raise SystemExit('give exactly one of --model (a timm entry point) and --upstream-kwargs (JSON)')
    if model is None and model_kwargs:
        raise SystemExit('--model-kwargs go with --model; with --upstream-kwargs put everything there')
    if output.suffix != '.safetensors':
        raise SystemExit(f'the output must be a .safetensors file, got {output}')
    state_dict = load_checkpoint_file(str(source))
    if model is not None:
        built = _model_from_entry_point(family, model, model_kwargs or {}, state_dict)
    else:
        try:
            built = from_official(family, upstream_kwargs, state_dict)
        except (RuntimeError, TypeError, ValueError) as err:
            raise SystemExit(f'{family} conversion failed: {err}')
    tensors = {k: v.detach().contiguous() for k, v in built.state_dict().items()}
    metadata = dict(family=family, source=source.name, converted_by='visionattn tools/convert_checkpoint.py')
    if model is not None:
        metadata.update(model=model, model_kwargs=json.dumps(model_kwargs or {}))
    else:
        metadata.update(upstream_kwargs=json.dumps(upstream_kwargs))
    output.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(output), metadata=metadata)
    return tensors


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    parser.add_argument('source', type=Path, help='official checkpoint (.pth/.pt/.safetensors)')
    parser.add_argument('output', type=Path, help='converted weights (.safetensors)')
    parser.add_argument('--family', required=True, help=f'model family ({", ".join(visionattn.families())})')
    parser.add_argument('--model', help='timm entry point whose architecture the checkpoint has, e.g. nat_tiny')
    parser.add_argument('--model-kwargs', default='{}', help='JSON keyword arguments for --model')
    parser.add_argument('--upstream-kwargs', help="JSON keyword arguments of the upstream model's constructor")
    args = parser.parse_args(argv)
    upstream = None if args.upstream_kwargs is None else _json_object(args.upstream_kwargs, '--upstream-kwargs')
    tensors = convert(args.family, args.source, args.output, model=args.model,
                      model_kwargs=_json_object(args.model_kwargs, '--model-kwargs'), upstream_kwargs=upstream)
    params = sum(t.numel() for t in tensors.values())
    print(f'wrote {args.output}: {len(tensors)} tensors, {params / 1e6:.2f}M values')
    if args.model:
        model_kwargs = json.loads(args.model_kwargs)
        extra = ''.join(f', {k}={v!r}' for k, v in model_kwargs.items())
        classes = f", num_classes={model_kwargs['num_classes']}" if 'num_classes' in model_kwargs else ''
        print(f"load it with: timm.create_model('{args.model}', pretrained=True, "
              f"pretrained_cfg_overlay=dict(file='{args.output}'{classes}){extra})")


if __name__ == '__main__':
    main(sys.argv[1:])
