# UPerNet + DiNAT-Tiny on ADE20K: the NAT-Tiny recipe with the official segmentation dilations
# (segmentation/configs/dinat/upernet_dinat_tiny_512x512_160k_ade20k.py upstream, chosen for 512x512 crops).
# Reported 47.8 mIoU (48.8 multi-scale).
_base_ = '../nat/upernet_nat_tiny_ade20k.py'
model = dict(backbone=dict(model_name='dinat_tiny', model_kwargs=dict(
    feature_norms=True, dilations=[[1, 16, 1], [1, 4, 1, 8], [1, 2, 1, 3, 1, 4] * 3, [1, 2, 1, 2, 1]])))
