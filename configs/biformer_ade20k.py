# UPerNet + BiFormer-S on ADE20K, the official recipe (rayleizhu/BiFormer
# semantic_segmentation/configs/ade20k/upernet.biformer_small.py): ImageNet-1k weights, n_win 8 for
# 512x512 crops, upstream padding (auto_pad: maps padded to a multiple of n_win, padded tokens attended),
# LayerNorm2d on every backbone output (upstream's extra_norms), stochastic depth 0.3, SyncBN,
# AdamW lr 6e-5 wd 0.01 (no decay on norms), 1500 linear warm-up iterations then poly (power 1) decay
# over 160k iterations, 16 images per batch (8 GPUs x 2). Upstream trained with AMP (loss scale 512):
# add --amp on GPUs. Reported: 49.8 mIoU single scale, 50.8 multi-scale + flip.
_base_ = [
    '_base_/models/upernet_timm.py', '_base_/datasets/ade20k.py',
    '_base_/schedules/schedule_160k.py', '_base_/default_runtime.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        model_name='biformer_small', pretrained=True, drop_path_rate=0.3,
        model_kwargs=dict(n_win=8, pad_mode='upstream', feature_norms=True)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
sync_bn = 'torch'  # upstream converts the backbone's BatchNorm to SyncBN (multi-GPU runs only)
