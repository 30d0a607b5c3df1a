# Mask R-CNN + FPN + BiFormer-B on COCO, 1x (maskrcnn.1x.biformer_base.py): as BiFormer-S with stochastic
# depth 0.3. Reported: 48.6 box AP / 43.7 mask AP.
_base_ = './mask_rcnn_biformer_small_fpn_1x_coco.py'
model = dict(
    backbone=dict(model_name='biformer_base', drop_path_rate=0.3),
    neck=dict(in_channels=[96, 192, 384, 768]))
