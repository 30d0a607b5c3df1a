# timm ResNet-50 (ImageNet-pretrained) fine-tuned on EuroSAT RGB (10 classes, 64x64 patches at native size):
# 30 epochs of batch 64, AdamW, cosine decay; the best checkpoint by accuracy is kept.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/eurosat.py',
    '../_base_/schedules/adamw_cosine_30e.py', '../_base_/default_runtime.py'
]
model = dict(model_name='resnet50', pretrained=True, num_classes=10, drop_path_rate=0.05, train_cfg=None,
             data_preprocessor=dict(num_classes=10))
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
