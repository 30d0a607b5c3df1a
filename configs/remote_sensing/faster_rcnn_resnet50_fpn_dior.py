# Faster R-CNN + FPN + ResNet-50 (ImageNet-pretrained through timm) on DIOR (20 classes, horizontal boxes),
# mmdet's 1x schedule (12 epochs) at 800x800. lr 0.005 is mmdet's 0.02 scaled to batch 4 (one GPU); scale it
# with the total batch size.
_base_ = [
    '../_base_/models/mask_rcnn_timm_fpn.py', '../_base_/datasets/dior.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
model = dict(
    type='FasterRCNN',
    data_preprocessor=dict(pad_mask=False),
    roi_head=dict(mask_roi_extractor=None, mask_head=None, bbox_head=dict(num_classes=20)))
optim_wrapper = dict(optimizer=dict(lr=0.005))
default_hooks = dict(checkpoint=dict(save_best='pascal_voc/mAP', rule='greater'))
