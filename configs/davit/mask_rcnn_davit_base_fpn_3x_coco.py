# Mask R-CNN + FPN + DaViT-B on COCO, 3x: the DaViT-T 3x recipe (mask_rcnn_davit_tiny_fpn_3x_coco.py)
# with the base backbone and stochastic depth 0.3 (see mask_rcnn_davit_base_fpn_1x_coco.py). Reported 49.9 box AP / 44.6 mask AP.
_base_ = './mask_rcnn_davit_tiny_fpn_3x_coco.py'
model = dict(backbone=dict(model_name='davit_base', drop_path_rate=0.3), neck=dict(in_channels=[128, 256, 512, 1024]))
