# Mask R-CNN + FPN + NAT-Tiny on COCO, the official recipe (SHI-Labs/Neighborhood-Attention-Transformer
# detection/configs/nat/mask_rcnn_nat_tiny_3x_coco.py): ImageNet-1k weights, a LayerNorm on every backbone
# output (feature_norms, the official backbone's norm0..norm3), stochastic depth 0.2, multi-scale + crop
# training, AdamW lr 1e-4 wd 0.05 without decay on norms and relative positional biases, 36 epochs (steps 27
# and 33), 16 images per batch (8 GPUs x 2). Upstream trained with mixed precision: add --amp.
# Reported 47.7 box AP / 42.6 mask AP. The official COCO weights (nat_tiny_maskrcnn.pth) load as the backbone
# with model.backbone.pretrained=<file> (their backbone.* and norm0..3 keys are converted).
_base_ = [
    '../_base_/models/mask_rcnn_timm_fpn.py', '../_base_/datasets/coco_instance_ms_crop.py',
    '../_base_/schedules/schedule_3x.py', '../_base_/default_runtime.py'
]
model = dict(
    backbone=dict(model_name='nat_tiny', pretrained=True, frozen_stages=-1, norm_eval=False, drop_path_rate=0.2,
                  model_kwargs=dict(feature_norms=True)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'.rpb': dict(decay_mult=0.0), 'norm': dict(decay_mult=0.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=16)
