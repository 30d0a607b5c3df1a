"""Convert CBAM / Triplet ResNet weights for mmdet's and mmseg's ResNet with the attention plug-in.

    python tools/convert_attention_resnet.py SRC DST --model resnet50_triplet

SRC is an official checkpoint (e.g. the Triplet release's ``model_best.pth.tar``; ``module.``
prefixes and the training-checkpoint wrapper are fine) or weights of the timm model ``--model``.
DST holds the backbone's state dict in OpenMMLab's ResNet layout with the plug-in (``cbam`` or
``triplet_attention``) at ``after_conv3`` in every stage, for
``backbone=dict(..., init_cfg=dict(type='Pretrained', checkpoint=DST))``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import timm
import torch

from visionattn.checkpoint import load_checkpoint_file
from visionattn.errors import UnknownNameError
from visionattn.mm.plugins import resnet_to_openmmlab

from . import add_debug_argument, cli_main


@cli_main
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', type=Path, help='official checkpoint or timm-layout weights')
    parser.add_argument('dst', type=Path, help='output file (OpenMMLab ResNet layout)')
    parser.add_argument('--model', required=True,
                        help='timm model the weights belong to, e.g. resnet50_triplet, resnet50_triplet_k3, resnet50_cbam')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not timm.is_model(args.model):
        raise UnknownNameError(f"unknown model {args.model!r}; choose from "
                               f"{timm.list_models(['resnet*_cbam', 'resnet*_triplet*'])}")
    with torch.device('meta'):
        model = timm.create_model(args.model)
    state_dict = resnet_to_openmmlab(load_checkpoint_file(str(args.src)), model)
    args.dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, args.dst)
    print(f'{len(state_dict)} tensors written to {args.dst}')


if __name__ == '__main__':
    main()
