# timm ConvNeXt-T (ImageNet-pretrained) fine-tuned on NWPU-RESISC45 (45 scene classes, 20% training split)
# at 224x224: 30 epochs of batch 64, AdamW, cosine decay; the best checkpoint by accuracy is kept.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/nwpu_resisc45.py',
    '../_base_/schedules/adamw_cosine_30e.py', '../_base_/default_runtime.py'
]
model = dict(model_name='convnext_tiny', pretrained=True, num_classes=45, drop_path_rate=0.1, train_cfg=None,
             data_preprocessor=dict(num_classes=45))
optim_wrapper = dict(optimizer=dict(lr=2e-4))
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
