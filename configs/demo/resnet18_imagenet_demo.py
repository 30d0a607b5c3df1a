# Demo: timm ResNet-18 (random init) on the synthetic ImageNet stand-in, 64px images, 5 classes used.
_base_ = '../timm/resnet50_imagenet.py'
data_root = 'data/demo/imagenet'
model = dict(model_name='resnet18', drop_path_rate=0.0, train_cfg=None)
train_pipeline = [
    dict(type='visionattn.LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='visionattn.LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(batch_size=32, num_workers=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, num_workers=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=2e-3), clip_grad=None)
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0)]
train_cfg = dict(max_epochs=6, val_interval=6)
default_hooks = dict(logger=dict(interval=5))
