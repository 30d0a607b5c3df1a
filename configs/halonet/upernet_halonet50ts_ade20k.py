# UPerNet + timm's halonet50ts (timm/halonet50ts.a1h_in1k) on ADE20K with mmseg's ResNet 160k recipe (SGD lr 0.01,
# poly decay, 512x512 crops). No upstream HaloNet segmentation recipe was published; inputs are padded to
# multiples of 256 for the halo attention and the features cropped back (TimmBackbone).
_base_ = [
    '../_base_/models/upernet_timm.py', '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py', '../_base_/default_runtime.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(model_name='halonet50ts', pretrained=True),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))
