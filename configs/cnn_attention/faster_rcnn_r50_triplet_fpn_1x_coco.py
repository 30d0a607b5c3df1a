# Faster R-CNN + FPN on mmdet's ResNet-50 with Triplet attention (k = 7) in every bottleneck, COCO, mmdet's
# 1x recipe: the setting for which landskape-ai/triplet-attention reports 39.3 box AP (MMDetection table).
# The plug-in sits at 'after_conv3' (after each bottleneck's last BatchNorm, before the addition), in all four
# stages, as in the paper and the ImageNet weights.
# ImageNet weights: download the official ResNet-50 + Triplet (k = 7) checkpoint (resnet50_triplet's
# pretrained_cfg url; Google Drive), then convert it once into this backbone's layout:
#   python tools/convert_attention_resnet.py DOWNLOADED_CHECKPOINT checkpoints/resnet50_triplet_in1k_mm.pth \
#       --model resnet50_triplet
_base_ = [
    '../_base_/models/mask_rcnn_timm_fpn.py', '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
model = dict(
    type='FasterRCNN',
    data_preprocessor=dict(pad_mask=False),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        plugins=[dict(cfg=dict(type='visionattn.TripletAttention', kernel_size=7),
                      stages=(True, True, True, True), position='after_conv3')],
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/resnet50_triplet_in1k_mm.pth')),
    roi_head=dict(mask_roi_extractor=None, mask_head=None))

