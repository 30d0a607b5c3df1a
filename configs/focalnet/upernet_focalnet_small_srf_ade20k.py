# UPerNet + FocalNet-S (SRF) on ADE20K (recipe: upernet_focalnet_tiny_srf_ade20k.py).
# Focal kernels [3, 5] in ImageNet, [9, 11] here. Reported 49.3 mIoU (single scale).
_base_ = './upernet_focalnet_tiny_srf_ade20k.py'
model = dict(backbone=dict(model_name='focalnet_small_srf'))
