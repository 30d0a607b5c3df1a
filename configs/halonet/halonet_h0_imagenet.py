# HaloNet-H0 (the paper's pure local self-attention model, arXiv:2103.12731) on ImageNet-1k at the paper's
# 256px. The paper's training details are not reproduced: this is the project's DeiT/Swin AdamW recipe
# (300 epochs, RandAugment, Mixup/CutMix, label smoothing) at the model's size, evaluated with a 0.95 centre
# crop. No official weights exist; the paper reports 77.9% top-1.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/imagenet.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime.py'
]
model = dict(model_name='halonet_h0')
img_size = 256
train_pipeline = [dict(t, scale=img_size) if t['type'] == 'RandomResizedCrop' else t for t in _base_.train_pipeline]
test_pipeline = [dict(t, scale=round(img_size / 0.95)) if t['type'] == 'ResizeEdge' else
                 dict(t, crop_size=img_size) if t['type'] == 'CenterCrop' else t for t in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
