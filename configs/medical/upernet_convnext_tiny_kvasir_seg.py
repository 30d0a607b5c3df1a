# UPerNet + ConvNeXt-T (ImageNet-pretrained through timm) on Kvasir-SEG polyps: binary head trained with
# BCE + Dice, 20k iterations of batch 8 at 512x512, AdamW; the best checkpoint by Dice is kept.
_base_ = [
    '../_base_/models/upernet_timm_binary.py', '../_base_/datasets/kvasir_seg.py',
    '../_base_/schedules/adamw_poly_20k.py', '../_base_/default_runtime.py'
]
model = dict(
    data_preprocessor=dict(size=(512, 512)),
    backbone=dict(model_name='convnext_tiny', drop_path_rate=0.2, pretrained=True),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
default_hooks = dict(checkpoint=dict(save_best='mDice', rule='greater'))
