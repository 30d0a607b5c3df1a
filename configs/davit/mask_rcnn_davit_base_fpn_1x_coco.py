# Mask R-CNN + FPN + DaViT-B on COCO, 1x: the DaViT-T recipe (mask_rcnn_davit_tiny_fpn_1x_coco.py)
# with the base backbone; upstream published only the tiny config, so stochastic depth follows Swin's
# detection recipe (0.2 at 1x, 0.3 at 3x). Reported 48.2 box AP / 43.3 mask AP.
_base_ = './mask_rcnn_davit_tiny_fpn_1x_coco.py'
model = dict(backbone=dict(model_name='davit_base', drop_path_rate=0.2), neck=dict(in_channels=[128, 256, 512, 1024]))
