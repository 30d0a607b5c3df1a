# Mask R-CNN + FPN + FocalNet-S (SRF) on COCO, 1x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py).
# Focal kernels [3, 5] in ImageNet, [9, 11] here. Reported 48.0 box AP / 42.7 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py'
model = dict(backbone=dict(model_name='focalnet_small_srf', drop_path_rate=0.2))
