# DiNAT-iso-Base on ImageNet-1k: the NAT-iso-Base recipe unchanged (classification/configs/dinat_isotropic_base.yml
# upstream). Official weights: pretrained=True (dinat_isotropic_base.in1k), reported 82.1% top-1.
_base_ = '../nat/nat_isotropic_base_imagenet.py'
model = dict(model_name='dinat_isotropic_base')
