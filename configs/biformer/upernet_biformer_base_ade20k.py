# UPerNet + BiFormer-B on ADE20K, the official recipe (upernet.biformer_base.py): as BiFormer-S with
# stochastic depth 0.4. Reported: 51.0 mIoU single scale, 51.7 multi-scale + flip.
_base_ = '../biformer_ade20k.py'
model = dict(
    backbone=dict(model_name='biformer_base', drop_path_rate=0.4),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
