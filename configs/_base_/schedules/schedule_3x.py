# mmdet's 3x schedule: 36 epochs, steps at 27 and 33 (used with multi-scale training).
_base_ = './schedule_1x.py'
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=36, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
