# Semantic FPN + BiFormer-S on ADE20K, the official recipe (rayleizhu/BiFormer
# semantic_segmentation/configs/ade20k/sfpn.biformer_small.py, after UniFormer): n_win 8, upstream
# padding, output LayerNorm2d, stochastic depth 0.15, SyncBN, AdamW lr 2e-4 wd 1e-4, 1000 linear warm-up
# iterations from 0.1x then cosine to 1e-8x over 80k iterations, 32 images per batch (8 GPUs x 4).
# Upstream trained with AMP: add --amp on GPUs. Reported: 48.9 mIoU.
_base_ = [
    '../_base_/datasets/ade20k.py', '../_base_/schedules/schedule_80k.py', '../_base_/default_runtime.py'
]
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=crop_size),
    backbone=dict(
        type='visionattn.TimmBackbone', model_name='biformer_small', pretrained=True, drop_path_rate=0.15,
        out_indices=(0, 1, 2, 3), model_kwargs=dict(n_win=8, pad_mode='upstream', feature_norms=True)),
    neck=dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=256, num_outs=4),
    decode_head=dict(
        type='FPNHead', in_channels=[256, 256, 256, 256], in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32],
        channels=128, dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-8, by_epoch=False, begin=1000, end=80000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=4000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000, max_keep_ckpts=1,
                                     save_best='mIoU'))
sync_bn = 'torch'
