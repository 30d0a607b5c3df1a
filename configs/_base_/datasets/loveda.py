# LoveDA land-cover segmentation (Wang et al. 2021) as unzipped under data/LoveDA: Train/ and Val/, each
# with Urban/ and Rural/ {images_png,masks_png} (1024x1024; 2522 / 1669 images). Mask 0 = no-data
# (ignored via reduce_zero_label), 1-7 = background, building, road, water, barren, forest, agriculture.
# Test/ has no masks (scored on the challenge server). mmseg.
default_scope = 'mmseg'
dataset_type = 'visionattn.LoveDADataset'
data_root = 'data/LoveDA'
crop_size = (512, 512)
# Overhead imagery has no "up": all eight flips/rotations of a square crop, scale jitter, colour jitter.
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='visionattn.LoadSegAnnotations'),
    dict(type='RandomResize', scale=(1024, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='visionattn.Albumentations', transforms=[dict(type='SquareSymmetry', p=1.0)]),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='Resize', scale=(1024, 1024), keep_ratio=True),
    dict(type='visionattn.LoadSegAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, domains=('Urban', 'Rural'),
                 data_prefix=dict(img_path='Train', seg_map_path='Train'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, domains=('Urban', 'Rural'),
                 data_prefix=dict(img_path='Val', seg_map_path='Val'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='visionattn.SegPerClassMetric')
test_evaluator = val_evaluator
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
