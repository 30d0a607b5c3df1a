# FocalNet-T (SRF) on ImageNet-1k, the official recipe (microsoft/FocalNet config.py: Swin's AdamW recipe, 300 epochs,
# lr 1e-3 at batch 1024, 20 warm-up epochs, gradient clipping 5, RandAugment, Mixup/CutMix, label smoothing)
# with stochastic depth 0.2 / 0.3 / 0.5 for T / S / B. Weights: timm/focalnet_tiny_srf.ms_in1k
# (pretrained=True); reported 82.1% top-1 at 224px.
_base_ = [
    '../_base_/models/timm_classifier.py', '../_base_/datasets/imagenet.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime.py'
]
model = dict(model_name='focalnet_tiny_srf', drop_path_rate=0.2)
