# Mask R-CNN + FPN + FocalNet-T (LRF) on COCO, 1x (recipe: mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py).
# Focal kernels [3, 5, 7] in ImageNet, [9, 11, 13] here. Reported 46.1 box AP / 41.5 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py'
model = dict(backbone=dict(model_name='focalnet_tiny_lrf', drop_path_rate=0.1))
