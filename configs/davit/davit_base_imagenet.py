# DaViT-B on ImageNet-1k (recipe: davit_tiny_imagenet.py). Reported 84.6% top-1 at 224px.
_base_ = './davit_tiny_imagenet.py'
model = dict(model_name='davit_base', drop_path_rate=0.4)
