# ISPRS Potsdam semantic labelling in mmseg's converted layout under data/potsdam: img_dir/{train,val} and
# ann_dir/{train,val}, 512x512 patches cut from the 6000x6000 tiles (2_Ortho_RGB.zip and
# 5_Labels_all_noBoundary.zip) by mmseg's tools/dataset_converters/potsdam.py. Mask 0 = boundary (ignored via
# reduce_zero_label); 1-6 = impervious surface, building, low vegetation, tree, car, clutter. mmseg.
default_scope = 'mmseg'
dataset_type = 'visionattn.PotsdamDataset'
data_root = 'data/potsdam'
crop_size = (512, 512)
# Overhead imagery has no "up": all eight flips/rotations of a square crop, scale jitter, colour jitter.
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='visionattn.LoadSegAnnotations'),
    dict(type='RandomResize', scale=(512, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='visionattn.Albumentations', transforms=[dict(type='SquareSymmetry', p=1.0)]),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='visionattn.LoadSegAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='visionattn.SegPerClassMetric')
test_evaluator = val_evaluator
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
