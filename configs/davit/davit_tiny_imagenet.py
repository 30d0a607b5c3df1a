# DaViT-T on ImageNet-1k: the DeiT/Swin AdamW recipe of the official training script (300 epochs,
# RandAugment, Mixup/CutMix, label smoothing); stochastic depth 0.1 / 0.2 / 0.4 for T / S / B.
# Weights: timm/davit_tiny.msft_in1k (pretrained=True), reported 82.8% top-1 at 224px.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/imagenet.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime.py'
]
model = dict(model_name='davit_tiny', drop_path_rate=0.1)
