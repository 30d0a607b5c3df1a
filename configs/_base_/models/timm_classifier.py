# A whole timm model (its own head and final norm) as an mmpretrain classifier, with the DeiT/Swin
# recipe's label smoothing and Mixup/CutMix. visionattn.TimmClassifier keeps pretrained weights intact.
model = dict(
    type='visionattn.TimmClassifier',
    model_name='resnet50',
    pretrained=False,
    num_classes=1000,
    drop_path_rate=0.1,
    loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
    data_preprocessor=dict(
        type='mmpretrain.ClsDataPreprocessor',
        num_classes=1000,
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
