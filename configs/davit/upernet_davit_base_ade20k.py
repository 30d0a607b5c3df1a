# UPerNet + DaViT-B on ADE20K: the DaViT-T recipe (upernet_davit_tiny_ade20k.py). Reported 49.4 mIoU.
_base_ = './upernet_davit_tiny_ade20k.py'
model = dict(
    backbone=dict(model_name='davit_base'),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
