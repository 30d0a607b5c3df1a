# NWPU-RESISC45 scene classification (Cheng et al. 2017): 31,500 256x256 images, 45 class folders, as unzipped
# under data/NWPU-RESISC45. The benchmark trains on 20% (or 10%) per class and tests on the rest: a seeded,
# stratified 20/10/70 split (validation taken from the held-out 80%). mmpretrain.
default_scope = 'mmpretrain'
dataset_type = 'visionattn.NWPURESISC45Dataset'
data_root = 'data/NWPU-RESISC45'
split_fractions = dict(train=0.2, val=0.1, test=0.7)
# Scale jitter, then all eight flips/rotations (overhead imagery has no "up").
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.5, 1.0)),
    dict(type='visionattn.Albumentations', transforms=[dict(type='SquareSymmetry', p=1.0)]),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='visionattn.LoadImageFromFile'), dict(type='Resize', scale=224), dict(type='PackInputs')]


def _split(split: str, pipeline: list) -> dict:
    return dict(type=dataset_type, data_root=data_root, split=split, split_fractions=split_fractions,
                pipeline=pipeline)


train_dataloader = dict(batch_size=64, num_workers=4, persistent_workers=True,
                        sampler=dict(type='DefaultSampler', shuffle=True), dataset=_split('train', train_pipeline))
val_dataloader = dict(batch_size=128, num_workers=4, persistent_workers=True,
                      sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('val', test_pipeline))
test_dataloader = dict(batch_size=128, num_workers=4, persistent_workers=True,
                       sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('test', test_pipeline))
val_evaluator = [dict(type='Accuracy', topk=(1, 5)), dict(type='visionattn.ClsPerClassMetric')]
test_evaluator = val_evaluator
visualizer = dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
