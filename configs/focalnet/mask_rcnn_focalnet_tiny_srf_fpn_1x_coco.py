# Mask R-CNN + FPN + FocalNet-T (SRF) on COCO, the official recipe (microsoft/FocalNet
# detection/configs/focalnet/mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_1x_coco_srf.py):
# focal kernels widened to 9 (kernels [3, 5] in ImageNet, [9, 11] here; the ImageNet kernels are zero-padded
# into them when the weights load), a LayerNorm on every output as the official backbone has,
# multi-scale + crop training, AdamW lr 1e-4 wd 0.05 (none on norms), 12 epochs with steps at 9 and 11,
# stochastic depth 0.1 / 0.2 / 0.3 for T / S / B, 16 images per batch (8 GPUs x 2). Upstream trained
# in fp16: add --amp. Reported 45.9 box AP / 41.3 mask AP.
_base_ = [
    '../_base_/models/mask_rcnn_timm_fpn.py', '../_base_/datasets/coco_instance_ms_crop.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
model = dict(
    backbone=dict(
        model_name='focalnet_tiny_srf', pretrained=True, frozen_stages=-1, norm_eval=False, drop_path_rate=0.1,
        model_kwargs=dict(focal_windows=(9, 9, 9, 9)),
        feature_norms=dict(type='layernorm2d', eps=1e-5)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
