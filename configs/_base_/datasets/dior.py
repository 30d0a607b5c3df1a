# DIOR object detection (Li et al. 2020; 23,463 800x800 images, 20 classes, horizontal boxes) as published
# under data/DIOR: JPEGImages-trainval/, JPEGImages-test/, Annotations/Horizontal Bounding Boxes/*.xml,
# ImageSets/Main/{train,val,test}.txt (if your ImageSets.zip unzipped to Main/, move it under ImageSets/).
# Papers train on train+val (11,725 images) and test on test (11,738). mmdet.
default_scope = 'mmdet'
dataset_type = 'visionattn.DIORDataset'
data_root = 'data/DIOR/'
img_scale = (800, 800)
# Overhead imagery: horizontal, vertical and diagonal flips (boxes stay axis-aligned).
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.75, direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='ImageSets/Main/train.txt',
                 data_prefix=dict(sub_data_root=''), img_subdir='JPEGImages-trainval',
                 filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='ImageSets/Main/val.txt',
                 data_prefix=dict(sub_data_root=''), img_subdir='JPEGImages-trainval', test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='ImageSets/Main/test.txt',
                 data_prefix=dict(sub_data_root=''), img_subdir='JPEGImages-test', test_mode=True,
                 pipeline=test_pipeline))
# VOC-style AP at IoU 0.5 per class, and their mean.
val_evaluator = dict(type='visionattn.DetPerClassAPMetric', iou_thrs=0.5)
test_evaluator = val_evaluator
visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
