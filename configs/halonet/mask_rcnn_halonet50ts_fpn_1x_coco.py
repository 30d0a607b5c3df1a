# Mask R-CNN + FPN + timm's halonet50ts (ImageNet-1k weights timm/halonet50ts.a1h_in1k, 81.7% top-1) on COCO
# with mmdet's ResNet 1x recipe (SGD lr 0.02, frozen stem and first stage, BatchNorm in eval mode, 1333x800).
# No upstream HaloNet detection recipe was published. Halo attention (block 8 at stride 32) needs inputs
# that are multiples of 256: TimmBackbone pads each batch to that and crops the features back.
_base_ = [
    '../_base_/models/mask_rcnn_timm_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
model = dict(backbone=dict(model_name='halonet50ts', pretrained=True, frozen_stages=1, norm_eval=True))
