# UPerNet + DaViT-S on ADE20K: the DaViT-T recipe (upernet_davit_tiny_ade20k.py). Reported 48.8 mIoU.
_base_ = './upernet_davit_tiny_ade20k.py'
model = dict(backbone=dict(model_name='davit_small'))
