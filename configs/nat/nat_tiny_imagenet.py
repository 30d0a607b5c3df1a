# NAT-Tiny on ImageNet-1k, the official recipe (SHI-Labs/Neighborhood-Attention-Transformer
# classification/configs/nat_tiny.yml and train.py defaults): AdamW lr 1e-3 at 1024 images per batch (128 per
# GPU), weight decay 0.05 except on norms, biases and the relative positional biases, 20 warm-up epochs from
# 1e-6, cosine to 5e-6 at epoch 300 then 10 cool-down epochs, gradient clipping at 5, stochastic depth 0.2,
# RandAugment m9, random erasing 0.25, Mixup 0.8 / CutMix 1.0, label smoothing 0.1. Upstream trained with
# mixed precision: add --amp. Official weights: pretrained=True (nat_tiny.in1k), reported 83.2% top-1.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/imagenet.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime.py'
]
model = dict(model_name='nat_tiny', drop_path_rate=0.2)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.rpb': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=True, begin=20, end=300, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=310)
