# HaloNet-H1 on ImageNet-1k at 256px (recipe: halonet_h0_imagenet.py).
# No official weights exist; the paper reports 79.9% top-1.
_base_ = './halonet_h0_imagenet.py'
model = dict(model_name='halonet_h1')
