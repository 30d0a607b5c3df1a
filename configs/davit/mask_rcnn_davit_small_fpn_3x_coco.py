# Mask R-CNN + FPN + DaViT-S on COCO, 3x: the DaViT-T 3x recipe (mask_rcnn_davit_tiny_fpn_3x_coco.py)
# with the small backbone and stochastic depth 0.3 (see mask_rcnn_davit_small_fpn_1x_coco.py). Reported 49.5 box AP / 44.3 mask AP.
_base_ = './mask_rcnn_davit_tiny_fpn_3x_coco.py'
model = dict(backbone=dict(model_name='davit_small', drop_path_rate=0.3), neck=dict(in_channels=[96, 192, 384, 768]))
