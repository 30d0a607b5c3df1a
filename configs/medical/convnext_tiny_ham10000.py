# timm ConvNeXt-T (ImageNet-pretrained) fine-tuned on HAM10000 (ISIC 2018 Task 3, 7 imbalanced classes) at
# 224x224: 30 epochs of batch 32, AdamW, cosine decay. Class-weighted cross-entropy (with label smoothing)
# against the imbalance: weight_c = sqrt(N / (K * n_c)) from HAM10000's training counts. The best checkpoint
# by balanced accuracy (mean per-class sensitivity, the challenge's ranking metric) is kept.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/isic2018_task3.py',
    '../_base_/schedules/adamw_cosine_30e.py', '../_base_/default_runtime.py'
]
train_counts = dict(MEL=1113, NV=6705, BCC=514, AKIEC=327, BKL=1099, DF=115, VASC=142)  # class order of the CSV
class_weight = [round((sum(train_counts.values()) / (len(train_counts) * n)) ** 0.5, 4) for n in train_counts.values()]
model = dict(model_name='convnext_tiny', pretrained=True, num_classes=7, drop_path_rate=0.1, train_cfg=None,
             loss=dict(class_weight=class_weight), data_preprocessor=dict(num_classes=7))
optim_wrapper = dict(optimizer=dict(lr=2e-4))
default_hooks = dict(checkpoint=dict(save_best='per_class/balanced_accuracy', rule='greater'))
