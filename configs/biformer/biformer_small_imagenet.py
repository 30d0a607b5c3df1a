# BiFormer-S on ImageNet-1k, the official recipe (rayleizhu/BiFormer README and configs/train_args.yaml,
# the DeiT training code): 300 epochs, batch 1024 (8 GPUs x 128), AdamW lr 1e-3 (5e-4 x batch / 512)
# wd 0.05, 5 warm-up epochs then cosine to 1e-5, no gradient clipping, stochastic depth 0.15, label
# smoothing 0.1, Mixup 0.8 / CutMix 1.0, RandAugment m9, random erasing 0.25, repeated augmentation.
# n_win 7 (224px: every map is a multiple of 7, nothing is padded). Reported: 83.8% top-1.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/imagenet.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime.py'
]
model = dict(model_name='biformer_small', drop_path_rate=0.15, n_win=7)
train_dataloader = dict(sampler=dict(_delete_=True, type='RepeatAugSampler', shuffle=True))
optim_wrapper = dict(clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5),
]
