# timm ResNet-50 trained on ImageNet-1k with the DeiT/Swin AdamW recipe (300 epochs, batch 1024).
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/imagenet.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime.py'
]
