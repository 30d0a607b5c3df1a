# HaloNet-H6 on ImageNet-1k at 512px (recipe: halonet_h0_imagenet.py).
# No official weights exist; the paper reports 84.4% top-1.
_base_ = './halonet_h0_imagenet.py'
model = dict(model_name='halonet_h6')
img_size = 512
train_pipeline = [dict(t, scale=img_size) if t['type'] == 'RandomResizedCrop' else t for t in _base_.train_pipeline]
test_pipeline = [dict(t, scale=round(img_size / 0.95)) if t['type'] == 'ResizeEdge' else
                 dict(t, crop_size=img_size) if t['type'] == 'CenterCrop' else t for t in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
