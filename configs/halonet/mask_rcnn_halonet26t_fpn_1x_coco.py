# Mask R-CNN + FPN + timm's halonet26t (timm/halonet26t.a1h_in1k, 79.1% top-1) on COCO: the recipe of
# mask_rcnn_halonet50ts_fpn_1x_coco.py.
_base_ = './mask_rcnn_halonet50ts_fpn_1x_coco.py'
model = dict(backbone=dict(model_name='halonet26t'))
