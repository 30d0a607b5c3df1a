# UPerNet on mmseg's ResNet-50 with CBAM in every bottleneck, ADE20K, mmseg's 160k recipe.
# The plug-in sits at 'after_conv3' (after each bottleneck's last BatchNorm, before the addition), in all four
# stages, as in the CBAM paper and its ImageNet weights. The stem is ResNet's plain 7x7 one (type='ResNet',
# not mmseg's usual deep-stem ResNetV1c), so that the official ImageNet checkpoint fits.
# ImageNet weights: download the official ResNet-50 + CBAM checkpoint (resnet50_cbam's pretrained_cfg url;
# Google Drive; 77.62 top-1), then convert it once into this backbone's layout:
#   python tools/convert_attention_resnet.py DOWNLOADED_CHECKPOINT checkpoints/resnet50_cbam_in1k_mm.pth \
#       --model resnet50_cbam
# Other modules: cfg=dict(type='visionattn.TripletAttention'), dict(type='visionattn.ELA', size='S') (no
# official weights: set init_cfg=None or use your own).
_base_ = [
    '../_base_/models/upernet_timm.py', '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py', '../_base_/default_runtime.py'
]
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        plugins=[dict(cfg=dict(type='visionattn.CBAM'), stages=(True, True, True, True), position='after_conv3')],
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/resnet50_cbam_in1k_mm.pth')))
