# Mask R-CNN + FPN + FocalNet-S (SRF) on COCO, 3x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py).
# Focal kernels [3, 5] in ImageNet, [9, 11] here. Reported 48.9 box AP / 43.6 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py'
model = dict(backbone=dict(model_name='focalnet_small_srf', drop_path_rate=0.5))
