# ISIC 2018 Task 1 skin-lesion segmentation (binary, 0/255 PNG masks) in the challenge's folders under
# data/ISIC2018: 2594 training, 100 validation, 1000 test images. mmseg.
default_scope = 'mmseg'
dataset_type = 'visionattn.ISIC2018Task1Dataset'
data_root = 'data/ISIC2018'
img_scale = (512, 512)
# Medical augmentation: flips, affine and elastic deformation, intensity (brightness/contrast, gamma).
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='visionattn.LoadSegAnnotations', binary_threshold=128),
    dict(type='Resize', scale=img_scale, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='visionattn.Albumentations', transforms=[
        dict(type='Affine', scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-45, 45), p=0.5),
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


def _split(split: str, pipeline: list) -> dict:
    return dict(type=dataset_type, data_root=data_root, pipeline=pipeline,
                data_prefix=dict(img_path=f'ISIC2018_Task1-2_{split}_Input',
                                 seg_map_path=f'ISIC2018_Task1_{split}_GroundTruth'))


train_dataloader = dict(batch_size=8, num_workers=4, persistent_workers=True,
                        sampler=dict(type='InfiniteSampler', shuffle=True), dataset=_split('Training', train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=4, persistent_workers=True,
                      sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('Validation', test_pipeline))
test_dataloader = dict(batch_size=1, num_workers=4, persistent_workers=True,
                       sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('Test', test_pipeline))
# Per-class Dice/IoU/sensitivity/specificity and the challenge's thresholded Jaccard (0 below 0.65).
val_evaluator = dict(type='visionattn.SegPerClassMetric', thresholded_jaccard=0.65)
test_evaluator = val_evaluator
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
