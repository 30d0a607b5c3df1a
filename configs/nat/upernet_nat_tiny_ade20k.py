# UPerNet + NAT-Tiny on ADE20K, the official recipe (SHI-Labs/Neighborhood-Attention-Transformer
# segmentation/configs/nat/upernet_nat_tiny_512x512_160k_ade20k.py): ImageNet-1k weights, a LayerNorm on
# every backbone output (feature_norms), stochastic depth 0.3, 512x512 crops, AdamW lr 6e-5 wd 0.01 without decay
# on norms and relative positional biases, 1500 linear warm-up iterations then poly (power 1) decay over 160k
# iterations, 16 images per batch (8 GPUs x 2). Upstream trained with mixed precision: add --amp.
# Reported 47.1 mIoU (48.4 multi-scale).
_base_ = [
    '../_base_/models/upernet_timm.py', '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py', '../_base_/default_runtime.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name='nat_tiny', pretrained=True, drop_path_rate=0.3, model_kwargs=dict(feature_norms=True)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'.rpb': dict(decay_mult=0.0), 'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
