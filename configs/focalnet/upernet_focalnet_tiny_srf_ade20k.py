# UPerNet + FocalNet-T (SRF) on ADE20K, the official recipe (microsoft/FocalNet
# segmentation/configs/focalnet/upernet_focalnet_tiny_patch4_512x512_160k_ade20k_srf.py): focal kernels
# widened to 9 (kernels [3, 5] in ImageNet, [9, 11] here), a LayerNorm on every backbone output, 512x512 crops, stochastic
# depth 0.3, AdamW lr 6e-5 wd 0.01 (none on norms), 1500 linear warm-up iterations then poly (power 1)
# decay over 160k iterations, 16 images per batch (8 GPUs x 2). Reported 46.5 mIoU (single scale).
_base_ = [
    '../_base_/models/upernet_timm.py', '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py', '../_base_/default_runtime.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name='focalnet_tiny_srf', pretrained=True, drop_path_rate=0.3,
                  model_kwargs=dict(focal_windows=(9, 9, 9, 9)),
                  feature_norms=dict(type='layernorm2d', eps=1e-5)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
