# Mask R-CNN + FPN + BiFormer-S on COCO, 1x, the official recipe (rayleizhu/BiFormer
# object_detection/configs/coco/maskrcnn.1x.biformer_small.py, after UniFormer): n_win 16, upstream
# padding, output LayerNorm2d, BatchNorm statistics frozen (upstream norm_eval=True), no frozen stages,
# stochastic depth 0.2, AdamW lr 1e-4 wd 0.05 (no decay on norms), steps at epochs 8 and 11,
# 16 images per batch (8 GPUs x 2). Upstream trained with AMP: add --amp on GPUs.
# Reported: 47.8 box AP / 43.2 mask AP (48.1 / 43.6 in the README's re-run).
_base_ = [
    '../_base_/models/mask_rcnn_timm_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
model = dict(
    backbone=dict(
        model_name='biformer_small', pretrained=True, drop_path_rate=0.2, frozen_stages=-1, norm_eval=True,
        model_kwargs=dict(n_win=16, pad_mode='upstream', feature_norms=True)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
