# Mask R-CNN + FPN + FocalNet-T (LRF) on COCO, 3x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py).
# Focal kernels [3, 5, 7] in ImageNet, [9, 11, 13] here. Reported 48.0 box AP / 42.9 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_3x_coco.py'
model = dict(backbone=dict(model_name='focalnet_tiny_lrf', drop_path_rate=0.3))
