# Mask R-CNN + FPN + FocalNet-S (LRF) on COCO, 3x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py).
# Focal kernels [3, 5, 7] in ImageNet, [9, 11, 13] here. Reported 49.3 box AP / 43.8 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py'
model = dict(backbone=dict(model_name='focalnet_small_lrf', drop_path_rate=0.5))
