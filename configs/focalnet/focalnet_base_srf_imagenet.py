# FocalNet-B (SRF) on ImageNet-1k (recipe: focalnet_tiny_srf_imagenet.py). Reported 83.7% top-1.
_base_ = './focalnet_tiny_srf_imagenet.py'
model = dict(model_name='focalnet_base_srf', drop_path_rate=0.5)
