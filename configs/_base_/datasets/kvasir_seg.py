# Kvasir-SEG polyp segmentation (1000 colonoscopy images of varied size, binary masks as 0/255 JPEG), as
# unzipped: data/Kvasir-SEG/{images,masks}. The release has no split: a seeded 80/10/10 split of the one
# folder (or set ann_file to a published list of names and drop split/split_fractions). mmseg.
default_scope = 'mmseg'
dataset_type = 'visionattn.KvasirSEGDataset'
data_root = 'data/Kvasir-SEG'
img_scale = (512, 512)
split_fractions = dict(train=0.8, val=0.1, test=0.1)
# Medical augmentation: flips, affine and elastic deformation, intensity (brightness/contrast, gamma).
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='visionattn.LoadSegAnnotations', binary_threshold=128),
    dict(type='Resize', scale=img_scale, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='visionattn.Albumentations', transforms=[
        dict(type='Affine', scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-30, 30), p=0.5),
        dict(type='ElasticTransform', alpha=40, sigma=6, p=0.2),
        dict(type='RandomBrightnessContrast', brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        dict(type='RandomGamma', gamma_limit=(80, 120), p=0.3),
    ]),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=False),
    dict(type='visionattn.LoadSegAnnotations', binary_threshold=128),  # after Resize: scored at full size
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='images', seg_map_path='masks'),
                 split='train', split_fractions=split_fractions, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='images', seg_map_path='masks'),
                 split='val', split_fractions=split_fractions, pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='images', seg_map_path='masks'),
                 split='test', split_fractions=split_fractions, pipeline=test_pipeline))
# Dice/IoU, precision/recall (sensitivity), specificity per class, and the image-averaged Dice polyp papers report.
val_evaluator = dict(type='visionattn.SegPerClassMetric')
test_evaluator = val_evaluator
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
