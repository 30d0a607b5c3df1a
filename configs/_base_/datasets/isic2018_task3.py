# ISIC 2018 Task 3 / HAM10000 skin-lesion diagnosis (7 classes, imbalanced: NV is 67% of training) in the
# challenge's folders under data/ISIC2018: ISIC2018_Task3_{Training,Validation,Test}_Input/*.jpg (600x450)
# and ISIC2018_Task3_<Split>_GroundTruth/ISIC2018_Task3_<Split>_GroundTruth.csv. mmpretrain.
default_scope = 'mmpretrain'
dataset_type = 'visionattn.ISIC2018Task3Dataset'
data_root = 'data/ISIC2018'
# Medical augmentation: crops, flips, rotation and intensity jitter.
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.4, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='visionattn.Albumentations', transforms=[
        dict(type='Affine', rotate=(-90, 90), p=0.5),
        dict(type='RandomBrightnessContrast', brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        dict(type='RandomGamma', gamma_limit=(85, 115), p=0.3),
    ]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]


def _split(split: str, pipeline: list) -> dict:
    return dict(type=dataset_type, data_root=data_root, data_prefix=f'ISIC2018_Task3_{split}_Input',
                ann_file=f'ISIC2018_Task3_{split}_GroundTruth/ISIC2018_Task3_{split}_GroundTruth.csv', pipeline=pipeline)


train_dataloader = dict(batch_size=32, num_workers=4, persistent_workers=True,
                        sampler=dict(type='DefaultSampler', shuffle=True), dataset=_split('Training', train_pipeline))
val_dataloader = dict(batch_size=64, num_workers=4, persistent_workers=True,
                      sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('Validation', test_pipeline))
test_dataloader = dict(batch_size=64, num_workers=4, persistent_workers=True,
                       sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('Test', test_pipeline))
# Balanced accuracy (the challenge's ranking metric), per-class sensitivity/specificity/precision/F1.
val_evaluator = [dict(type='Accuracy', topk=(1,)), dict(type='visionattn.ClsPerClassMetric')]
test_evaluator = val_evaluator
visualizer = dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
