# UPerNet + ConvNeXt-T (ImageNet-pretrained through timm) on ISPRS Potsdam (6 classes, mmseg's 512x512
# patches): 80k iterations of batch 8, AdamW (mmseg's Potsdam schedule length); best checkpoint by mIoU.
_base_ = [
    '../_base_/models/upernet_timm.py', '../_base_/datasets/potsdam.py',
    '../_base_/schedules/adamw_poly_20k.py', '../_base_/default_runtime.py'
]
model = dict(
    data_preprocessor=dict(size=(512, 512)),
    backbone=dict(model_name='convnext_tiny', drop_path_rate=0.3, pretrained=True),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=6),
    auxiliary_head=dict(in_channels=384, num_classes=6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=80000, by_epoch=False),
]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000, save_best='mIoU', rule='greater'))
