"""Convert an official checkpoint of any registered model family into a safetensors file or a timm hub folder.

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
feature_norms=True``, or as ``pretrained=<file>`` of ``visionattn.TimmBackbone``)::

    model = timm.create_model('nat_tiny', pretrained=True, pretrained_cfg_overlay=dict(file='nat_tiny.safetensors'))

``--hub-dir DIR`` (with ``--model``) writes timm's hub layout instead of, or as well as, the file:
``DIR/config.json`` (architecture, num_classes, pretrained config, the model's arguments) and
``DIR/model.safetensors``, which load with no further arguments and upload to the Hugging Face hub as they are::

    python tools/convert_checkpoint.py --family nat --model nat_tiny nat_tiny.pth --hub-dir nat_tiny_hub
    model = timm.create_model('local-dir:nat_tiny_hub', pretrained=True)   # or 'hf-hub:<user>/<repo>'

Families: ``visionattn.families()``. Input: ``.pth``/``.pt`` (read with ``weights_only=True``; bare or
wrapped in ``model``/``state_dict``) or ``.safetensors``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import visionattn
from visionattn.convert import convert_checkpoint

from . import add_debug_argument, cli_main, json_object


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    parser.add_argument('source', type=Path, help='official checkpoint (.pth/.pt/.safetensors)')
    parser.add_argument('output', type=Path, nargs='?', help='converted weights (.safetensors)')
    parser.add_argument('--hub-dir', type=Path, help="write timm's hub layout (config.json, model.safetensors) here")
    parser.add_argument('--family', required=True, help=f'model family ({", ".join(visionattn.families())})')
    parser.add_argument('--model', help='timm entry point whose architecture the checkpoint has, e.g. nat_tiny')
    parser.add_argument('--model-kwargs', default='{}', help='JSON keyword arguments for --model')
    parser.add_argument('--upstream-kwargs', help="JSON keyword arguments of the upstream model's constructor")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    upstream = None if args.upstream_kwargs is None else json_object(args.upstream_kwargs, '--upstream-kwargs')
    model_kwargs = json_object(args.model_kwargs, '--model-kwargs')
    if args.output is None and args.hub_dir is None:
        parser.error('give the output .safetensors file, --hub-dir DIR, or both')
    tensors = convert_checkpoint(args.family, args.source, args.output, model=args.model,
                                 model_kwargs=model_kwargs, upstream_kwargs=upstream,
                                 hub_dir=args.hub_dir)
    params = sum(t.numel() for t in tensors.values())
    for written in (args.output, args.hub_dir):
        if written is not None:
            print(f'wrote {written}: {len(tensors)} tensors, {params / 1e6:.2f}M values')
    if args.hub_dir:
        print(f"load it with: timm.create_model('local-dir:{args.hub_dir}', pretrained=True)")
    if args.model and args.output:
        extra = ''.join(f', {k}={v!r}' for k, v in model_kwargs.items())
        classes = f", num_classes={model_kwargs['num_classes']}" if 'num_classes' in model_kwargs else ''
        print(f"load it with: timm.create_model('{args.model}', pretrained=True, "
              f"pretrained_cfg_overlay=dict(file='{args.output}'{classes}){extra})")


if __name__ == '__main__':
    main()
