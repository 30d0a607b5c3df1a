# Mask R-CNN + FPN + FocalNet-B (LRF) on COCO, 3x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py).
# Focal kernels [3, 5, 7] in ImageNet, [9, 11, 13] here. Reported 49.8 box AP / 44.1 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py'
model = dict(
    backbone=dict(model_name='focalnet_base_lrf', drop_path_rate=0.5),
    neck=dict(in_channels=[128, 256, 512, 1024]))
