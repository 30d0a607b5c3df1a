# DiNAT-iso-Small on ImageNet-1k: the NAT-iso-Small recipe unchanged (classification/configs/dinat_isotropic_small.yml
# upstream). Official weights: pretrained=True (dinat_isotropic_small.in1k), reported 80.8% top-1.
_base_ = '../nat/nat_isotropic_small_imagenet.py'
model = dict(model_name='dinat_isotropic_small')
