# Mask R-CNN + FPN + FocalNet-T (SRF) on COCO, 3x: the 1x recipe (mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py)
# for 36 epochs with steps at 27 and 33 and stochastic depth 0.3 / 0.5 / 0.5 for T / S / B, as the official
# *_3x_coco_*.py configs. Reported 47.6 box AP / 42.6 mask AP.
_base_ = './mask_rcnn_focalnet_tiny_srf_fpn_1x_coco.py'
model = dict(backbone=dict(drop_path_rate=0.3))
train_cfg = dict(max_epochs=36)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
