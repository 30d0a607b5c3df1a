# Mask R-CNN + FPN + FocalNet-B (SRF) on COCO, 3x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py).
# Focal kernels [3, 5] in ImageNet, [9, 11] here. Reported 49.6 box AP / 44.1 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py'
model = dict(
    backbone=dict(model_name='focalnet_base_srf', drop_path_rate=0.5),
    neck=dict(in_channels=[128, 256, 512, 1024]))
