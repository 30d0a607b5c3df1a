# Mask R-CNN + FPN + DiNAT-Tiny on COCO: the NAT-Tiny recipe with the official detection dilations
# (detection/configs/dinat/mask_rcnn_dinat_tiny_3x_coco.py upstream, chosen for ~800x1333 inputs).
# Reported 48.6 box AP / 43.5 mask AP.
_base_ = '../nat/mask_rcnn_nat_tiny_fpn_3x_coco.py'
model = dict(backbone=dict(model_name='dinat_tiny', model_kwargs=dict(
    feature_norms=True, dilations=[[1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3, 1, 3, 1]])))
