# NAT-iso-Small on ImageNet-1k, the official recipe (SHI-Labs/Neighborhood-Attention-Transformer
# classification/configs/nat_isotropic_small.yml with train.py's defaults): NAT-Tiny's (configs/nat/nat_tiny_imagenet.py:
# AdamW lr 1e-3, weight decay 0.05, 20 warm-up epochs, cosine to 5e-6 at 300 + 10 cool-down epochs, batch 1024)
# with stochastic depth 0.1 (isotropic.py's nat_isotropic_small). Upstream has no detection or segmentation
# recipe for the isotropic models. Official weights: pretrained=True (nat_isotropic_small.in1k), reported 80.0% top-1.
_base_ = './nat_tiny_imagenet.py'
model = dict(model_name='nat_isotropic_small', drop_path_rate=0.1)
