# NAT-iso-Base on ImageNet-1k, the official recipe (classification/configs/nat_isotropic_base.yml): NAT-iso-Small's
# with stochastic depth 0.4 (isotropic.py's nat_isotropic_base), 50 warm-up epochs and an exponential moving
# average of the weights (--model-ema, timm's decay 0.9998 = mmengine EMAHook momentum 2e-4). Official weights:
# pretrained=True (nat_isotropic_base.in1k), reported 81.6% top-1.
_base_ = './nat_isotropic_small_imagenet.py'
model = dict(model_name='nat_isotropic_base', drop_path_rate=0.4)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=50, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=True, begin=50, end=300, convert_to_iter_based=True),
]
custom_hooks = [dict(type='visionattn.MetricsJsonHook'), dict(type='EMAHook', momentum=2e-4)]
