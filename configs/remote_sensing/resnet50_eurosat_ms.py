# timm ResNet-50 (ImageNet-pretrained) fine-tuned on all 13 Sentinel-2 bands of EuroSAT-MS: 30 epochs of
# batch 64, AdamW, cosine decay. timm adapts the RGB stem to 13 channels (the R, G, B filters repeated over
# the channels in order and scaled by 3/13); the loader puts B04, B03, B02 first so that they get the R, G, B
# filters. The 16-bit values are normalised per band by the data preprocessor.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/eurosat_ms.py',
    '../_base_/schedules/adamw_cosine_30e.py', '../_base_/default_runtime.py'
]
model = dict(
    model_name='resnet50', pretrained=True, num_classes=10, drop_path_rate=0.05, train_cfg=None,
    in_chans={{_base_.num_bands}},
    data_preprocessor=dict(num_classes=10, mean={{_base_.band_mean}}, std={{_base_.band_std}}, to_rgb=False))
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
# Prediction pictures (tools/test.py --show-dir): B04, B03, B02 as true colour.
default_hooks = dict(visualization=dict(type='visionattn.MultiBandVisualizationHook', rgb_bands=(0, 1, 2)))
