# UPerNet + FocalNet-T (LRF) on ADE20K (recipe: upernet_focalnet_tiny_srf_ade20k.py).
# Focal kernels [3, 5, 7] in ImageNet, [9, 11, 13] here. Reported 46.8 mIoU (single scale).
_base_ = './upernet_focalnet_tiny_srf_ade20k.py'
model = dict(backbone=dict(model_name='focalnet_tiny_lrf'))
