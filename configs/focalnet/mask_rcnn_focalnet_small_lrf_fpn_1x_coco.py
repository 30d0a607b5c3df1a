# Mask R-CNN + FPN + FocalNet-S (LRF) on COCO, 1x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py).
# Focal kernels [3, 5, 7] in ImageNet, [9, 11, 13] here. Reported 48.3 box AP / 43.1 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py'
model = dict(backbone=dict(model_name='focalnet_small_lrf', drop_path_rate=0.2))
