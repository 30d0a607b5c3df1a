# DiNAT-Tiny on ImageNet-1k: the NAT recipe unchanged (classification/configs/dinat_tiny.yml upstream).
# Official weights: pretrained=True (dinat_tiny.in1k), reported 82.7% top-1.
_base_ = '../nat/nat_tiny_imagenet.py'
model = dict(model_name='dinat_tiny')
