# Mask R-CNN + FPN + FocalNet-B (SRF) on COCO, 1x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py).
# Focal kernels [3, 5] in ImageNet, [9, 11] here. Reported 48.8 box AP / 43.3 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py'
model = dict(
    backbone=dict(model_name='focalnet_base_srf', drop_path_rate=0.3),
    neck=dict(in_channels=[128, 256, 512, 1024]))
