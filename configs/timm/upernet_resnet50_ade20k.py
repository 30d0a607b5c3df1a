# UPerNet + timm ResNet-50 (ImageNet-pretrained through timm) on ADE20K, mmseg's 160k recipe.
_base_ = [
    '../_base_/models/upernet_timm.py', '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py', '../_base_/default_runtime.py'
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
