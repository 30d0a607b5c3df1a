# Demo: configs/cnn_attention/upernet_r50_cbam_ade20k.py made small for the synthetic ADE20K stand-in
# (python tools/make_demo_data.py): a quarter-width ResNet-50 + CBAM (random init), 128px crops.
_base_ = '../cnn_attention/upernet_r50_cbam_ade20k.py'
data_root = 'data/demo/ade/ADEChallengeData2016'
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(stem_channels=16, base_channels=16, norm_cfg=norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=128, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=256, channels=64, norm_cfg=norm_cfg))
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='visionattn.LoadSegAnnotations'),
    dict(type='RandomResize', scale=(128, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='visionattn.LoadSegAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=8, num_workers=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01))
param_scheduler = [dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=0, end=300, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_interval=300)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(by_epoch=False, interval=150))
