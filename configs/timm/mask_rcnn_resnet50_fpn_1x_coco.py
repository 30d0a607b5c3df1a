# Mask R-CNN + FPN + timm ResNet-50 (ImageNet-pretrained through timm) on COCO, mmdet's 1x recipe.
_base_ = [
    '../_base_/models/mask_rcnn_timm_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
