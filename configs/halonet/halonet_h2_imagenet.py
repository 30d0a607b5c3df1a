# HaloNet-H2 on ImageNet-1k at 256px (recipe: halonet_h0_imagenet.py).
# No official weights exist; the paper reports 80.4% top-1.
_base_ = './halonet_h0_imagenet.py'
model = dict(model_name='halonet_h2')
