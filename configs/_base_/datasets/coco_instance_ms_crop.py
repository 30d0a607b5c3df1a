# COCO instance segmentation with the multi-scale + random-crop training augmentation (from DETR) that
# the Swin, DaViT and FocalNet Mask R-CNN recipes use for both their 1x and 3x schedules: shorter side
# 480-800, or 400-600 then a 384-600 crop then 480-800; 1333 longer side. Testing stays 1333x800.
_base_ = './coco_instance.py'
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', keep_ratio=True,
              scales=[(1333, 480), (1333, 512), (1333, 544), (1333, 576), (1333, 608), (1333, 640), (1333, 672),
                      (1333, 704), (1333, 736), (1333, 768), (1333, 800)])],
        [dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='RandomChoiceResize', keep_ratio=True,
              scales=[(1333, 480), (1333, 512), (1333, 544), (1333, 576), (1333, 608), (1333, 640), (1333, 672),
                      (1333, 704), (1333, 736), (1333, 768), (1333, 800)])],
    ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
