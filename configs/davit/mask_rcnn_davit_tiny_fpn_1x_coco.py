# Mask R-CNN + FPN + DaViT-T on COCO, the official recipe (dingmyu/davit mmdet/configs/davit_maskrcnn_1x_coco.py):
# ImageNet-1k weights (timm/davit_tiny.msft_in1k), a LayerNorm on every output as the official backbone has,
# multi-scale + crop training, AdamW lr 1e-4 wd 0.05, 12 epochs (steps 8, 11), 16 images per batch
# (8 GPUs x 2). Reported 45.0 box AP / 41.1 mask AP.
_base_ = [
    '../_base_/models/mask_rcnn_timm_fpn.py', '../_base_/datasets/coco_instance_ms_crop.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
model = dict(
    backbone=dict(
        model_name='davit_tiny', pretrained=True, frozen_stages=-1, norm_eval=False, drop_path_rate=0.1,
        feature_norms=dict(type='layernorm2d', eps=1e-5)),
    neck=dict(in_channels=[96, 192, 384, 768]))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=16)
