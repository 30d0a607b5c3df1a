# UPerNet + DaViT-T on ADE20K, the official recipe (dingmyu/davit mmseg/configs/upernet_davit_512x512_160k_ade20k.py):
# 512x512 crops, stochastic depth 0.3, a LayerNorm on every backbone output, AdamW lr 6e-5 wd 0.01, 1500
# linear warm-up iterations then poly (power 1) decay over 160k iterations, 16 images per batch
# (8 GPUs x 2). Reported 46.3 mIoU.
_base_ = [
    '../_base_/models/upernet_timm.py', '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py', '../_base_/default_runtime.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name='davit_tiny', pretrained=True, drop_path_rate=0.3,
                  feature_norms=dict(type='layernorm2d', eps=1e-5)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
