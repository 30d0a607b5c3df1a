# Mask R-CNN + FPN + DaViT-S on COCO, 1x: the DaViT-T recipe (mask_rcnn_davit_tiny_fpn_1x_coco.py)
# with the small backbone; upstream published only the tiny config, so stochastic depth follows Swin's
# detection recipe (0.2 at 1x, 0.3 at 3x). Reported 47.7 box AP / 42.9 mask AP.
_base_ = './mask_rcnn_davit_tiny_fpn_1x_coco.py'
model = dict(backbone=dict(model_name='davit_small', drop_path_rate=0.2), neck=dict(in_channels=[96, 192, 384, 768]))
