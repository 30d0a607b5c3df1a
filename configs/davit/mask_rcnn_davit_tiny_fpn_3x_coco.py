# Mask R-CNN + FPN + DaViT-T on COCO, 3x schedule (36 epochs, steps 27 and 33) with stochastic depth
# 0.2, as the official davit_maskrcnn_3x_coco.py. Reported 47.4 box AP / 42.9 mask AP.
_base_ = './mask_rcnn_davit_tiny_fpn_1x_coco.py'
model = dict(backbone=dict(drop_path_rate=0.2))
train_cfg = dict(max_epochs=36)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
