# EuroSAT RGB land-cover classification (Helber et al. 2019): 27,000 64x64 Sentinel-2 patches in 10 class
# folders, as unzipped under data/EuroSAT/2750 (the Zenodo copy unzips to EuroSAT_RGB: change data_prefix).
# No official split: a seeded, stratified 60/20/20 split. mmpretrain.
default_scope = 'mmpretrain'
dataset_type = 'visionattn.EuroSATDataset'
data_root = 'data/EuroSAT'
split_fractions = dict(train=0.6, val=0.2, test=0.2)
# Overhead imagery has no "up": all eight flips/rotations of the square patch.
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='visionattn.Albumentations', transforms=[dict(type='SquareSymmetry', p=1.0)]),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='visionattn.LoadImageFromFile'), dict(type='PackInputs')]


def _split(split: str, pipeline: list) -> dict:
    return dict(type=dataset_type, data_root=data_root, data_prefix='2750', split=split,
                split_fractions=split_fractions, pipeline=pipeline)


train_dataloader = dict(batch_size=64, num_workers=4, persistent_workers=True,
                        sampler=dict(type='DefaultSampler', shuffle=True), dataset=_split('train', train_pipeline))
val_dataloader = dict(batch_size=128, num_workers=4, persistent_workers=True,
                      sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('val', test_pipeline))
test_dataloader = dict(batch_size=128, num_workers=4, persistent_workers=True,
                       sampler=dict(type='DefaultSampler', shuffle=False), dataset=_split('test', test_pipeline))
val_evaluator = [dict(type='Accuracy', topk=(1,)), dict(type='visionattn.ClsPerClassMetric')]
test_evaluator = val_evaluator
visualizer = dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
