# UPerNet on a timm backbone for binary segmentation (foreground vs background, e.g. lesions, polyps): one
# sigmoid output channel thresholded at 0.5, trained with binary cross-entropy + Dice (mmseg's DiceLoss).
_base_ = './upernet_timm.py'
model = dict(
    decode_head=dict(
        num_classes=2, out_channels=1, threshold=0.5,
        loss_decode=[dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                     dict(type='DiceLoss', use_sigmoid=True, loss_weight=1.0)]),
    auxiliary_head=dict(
        num_classes=2, out_channels=1, threshold=0.5,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.4)))
