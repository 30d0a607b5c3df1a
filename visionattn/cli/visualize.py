"""Pictures of what a model attends to and predicts, from a trained checkpoint or a timm model.

    python tools/visualize.py routing MODEL [--checkpoint FILE] --image IMAGE [--query X Y ...] --out routing.png
    python tools/visualize.py neighborhood MODEL [--checkpoint FILE] --image IMAGE [--query X Y ...] --out nat.png
    python tools/visualize.py gates MODEL [--checkpoint FILE] --image IMAGE [IMAGE ...] --out gates.png
    python tools/visualize.py predictions CONFIG CHECKPOINT IMAGE [IMAGE ...] --out predictions.png

MODEL is a segmentation or detection config (``.py``, with the ``--checkpoint`` tools/train.py saved,
e.g. ``work_dirs/demo/iter_200.pth``) or a timm model name (``--checkpoint`` a weights file). The maps come
from one forward pass of the model on the image, as its own inference runs it (the config's test
pipeline), and are drawn over the image at the network's scale:

- ``routing``: BiFormer's bi-level routing: for each query pixel (``--query X Y``, repeatable; default
  three points), its region, the regions it is routed to (numbered by rank) and the query token's
  attention weights over their tokens, at the first routing layer of every stage (``--layers``);
- ``neighborhood``: NAT/DiNAT: each query's window and attention weights, at the first layer of every
  stage and dilation;
- ``gates``: CBAM/ELA/Triplet: the gate G of ``out = x * G`` averaged over channels, at the deepest
  module of every stage, one row per image;
- ``predictions``: segmentation or detection results drawn by mmseg's / mmdet's visualizer, with a
  legend of the classes found, one row per image.

``--per-head`` draws routing and neighborhood weights per head. What is computed and how:
:mod:`visionattn.analysis.attention_maps`; the figures: :mod:`visionattn.analysis.figures`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from mmengine.config import DictAction

from . import add_debug_argument, cli_main
from ..analysis.attention_maps import attention_gates, default_queries, neighborhood_attention, routed_attention
from ..analysis.figures import gates_figure, predictions_figure, query_attention_figure, save_figure
from ..analysis.loading import load_image, load_model
from ..analysis.predictions import draw_prediction

DEPRECATED_COMMANDS = {'neighbourhood': 'neighborhood'}


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--title', help='figure title (default: the model or config and the checkpoint)')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--dpi', type=int, default=100, help='pixels per inch of the figure (default 100)')
    parser.add_argument('--small', action='store_true', help='256-colour PNG, about a third of the size')
    add_debug_argument(parser)


def _strict_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--non-strict', action='store_true',
                        help='load a checkpoint that does not fit the model: only the matching tensors, with a '
                        'warning that names the rest (default: stop with that report)')


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help='segmentation/detection config (.py), or timm model name (after '
                                      '`import visionattn`)')
    parser.add_argument('--checkpoint', help='config: a checkpoint saved by tools/train.py; timm model: a weights file')
    _strict_argument(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='config: override entries (keys are checked)')
    parser.add_argument('--model-kwargs', type=json.loads, default={},
                        help='timm model: JSON dict of extra timm.create_model arguments, e.g. \'{"n_win": 8}\'')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='timm model: resize images to this size first (configs use their test pipeline)')
    parser.add_argument('--layers', nargs='+', help='attention layer names (default: one per stage; an unknown '
                                                    'name lists the model\'s layers)')
    parser.add_argument('--layer', help=argparse.SUPPRESS)  # the earlier single-layer spelling of --layers
    _output_arguments(parser)


def _query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--image', help='the input image (default: a grey image of --size, or 224x224)')
    parser.add_argument('--query', type=float, nargs=2, action='append', metavar=('X', 'Y'),
                        help='a query pixel of the image; repeat for several (default: three spread points)')
    parser.add_argument('--per-head', action='store_true', help='one panel per head instead of the mean of heads')


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('routing', help="BiFormer: each query's routed regions and attention weights")
    _model_arguments(p)
    _query_arguments(p)
    for name in ('neighborhood', 'neighbourhood'):
        p = sub.add_parser(name, help='NAT/DiNAT: each query\'s window and attention weights' if name == 'neighborhood'
                           else 'deprecated spelling of neighborhood')
        _model_arguments(p)
        _query_arguments(p)
    p = sub.add_parser('gates', help='CBAM/ELA/Triplet: the attention gates over the images')
    _model_arguments(p)
    p.add_argument('--image', nargs='+', required=True, help='input images, one row each')
    p = sub.add_parser('predictions', help='segmentation/detection results over the images')
    p.add_argument('config')
    p.add_argument('checkpoint')
    _strict_argument(p)
    p.add_argument('image', nargs='+', help='input images, one row each')
    p.add_argument('--score-thr', type=float, default=0.3, help='detection: lowest score drawn')
    p.add_argument('--opacity', type=float, default=0.5, help='opacity of segmentation colours and masks')
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                   help='override config entries (keys are checked), e.g. model.test_cfg.rcnn.score_thr=0.1')
    _output_arguments(p)
    args = parser.parse_args(argv)
    if args.command in DEPRECATED_COMMANDS:
        new = DEPRECATED_COMMANDS[args.command]
        print(f"warning: 'visualize.py {args.command}' is deprecated, use 'visualize.py {new}'", file=sys.stderr)
        args.command = new
    if getattr(args, 'layer', None):
        print('warning: --layer is deprecated, use --layers', file=sys.stderr)
        args.layers = [args.layer]
    return args


def _grey(args: argparse.Namespace) -> np.ndarray:
    height, width = args.size or (224, 224)
    return np.full((height, width, 3), 128, np.uint8)


@cli_main
def main(argv: list[str]) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.command == 'predictions':
        loaded = load_model(args.config, args.checkpoint, cfg_options=args.cfg_options, device=args.device,
                            strict=not args.non_strict)
        rows, legend = [], {}
        for path in args.image:
            image = load_image(path)
            prediction = draw_prediction(loaded, image, args.score_thr, args.opacity)
            rows.append((Path(path).name, image, prediction.drawn))
            legend.update(prediction.legend)
            print(f'{path}: {", ".join(name for name, _ in prediction.legend) or "nothing"} found')
        if loaded.scope == 'mmseg':
            what = 'Segmentation: every pixel coloured by its predicted class.'
        else:
            what = f'Detection: the instances scoring at least {args.score_thr}, with class and score.'
        figure = predictions_figure(rows, sorted(legend.items()), args.title or loaded.title, what)
        save_figure(figure, out, args.dpi, args.small)
        print(f'Wrote {out}')
        return

    loaded = load_model(args.model, args.checkpoint, cfg_options=args.cfg_options, model_kwargs=args.model_kwargs,
                        size=args.size, strict=not args.non_strict)
    title = args.title or loaded.title
    if args.command == 'gates':
        runs = [attention_gates(loaded, load_image(path), args.layers) for path in args.image]
        for path, (_, gates) in zip(args.image, runs):
            print(f'{path}: ' + '; '.join(f'{g.layer} mean gate {float(g.channel_mean.mean()):.3f} '
                                          f'[{float(g.channel_mean.min()):.3f}, {float(g.channel_mean.max()):.3f}]'
                                          for g in gates))
        save_figure(gates_figure(runs, title), out, args.dpi, args.small)
        print(f'Wrote {out}')
        return

    image = load_image(args.image) if args.image else _grey(args)
    queries = args.query or default_queries(*image.shape[:2])
    compute = routed_attention if args.command == 'routing' else neighborhood_attention
    inference, maps = compute(loaded, image, queries, args.layers)
    for m in maps:
        if args.command == 'routing':
            routes = '; '.join(f'query {i + 1} (region {m.query_regions[i]}) -> {list(m.routed[i])}'
                               for i in range(len(queries)))
            print(f'{m.layer}: {m.grid[0]}x{m.grid[1]} regions, top-{m.topk}: {routes}')
        else:
            print(f'{m.layer}: kernel {m.kernel_size}, dilation {m.dilation}, {m.map_size[0]}x{m.map_size[1]} tokens '
                  f'(attended map {m.padded_size[0]}x{m.padded_size[1]}), query tokens {m.queries}')
    save_figure(query_attention_figure(inference, maps, title, per_head=args.per_head), out, args.dpi, args.small)
    print(f'Wrote {out}')


if __name__ == '__main__':
    main()
