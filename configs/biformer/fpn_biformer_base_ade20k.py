# Semantic FPN + BiFormer-B on ADE20K (sfpn.biformer_base.py): as BiFormer-S with stochastic depth 0.3.
# Reported: 49.9 mIoU.
_base_ = './fpn_biformer_small_ade20k.py'
model = dict(
    backbone=dict(model_name='biformer_base', drop_path_rate=0.3),
    neck=dict(in_channels=[96, 192, 384, 768]))
