# RetinaNet + FPN + BiFormer-S on COCO, 1x, the official recipe (rayleizhu/BiFormer
# object_detection/configs/coco/retinanet.1x.biformer_small.py, after WaveViT): n_win 16, upstream
# padding, output LayerNorm2d, BatchNorm statistics frozen, stochastic depth 0.2, AdamW lr 1e-4 wd 1e-4,
# steps at epochs 8 and 11, 16 images per batch (8 GPUs x 2); the FPN starts at stride 8 with extra
# levels from its input. Upstream trained with AMP: add --amp on GPUs.
# Reported: 45.9 box AP (47.3 in the README's re-run). Sigmoid focal loss runs on torchvision.
_base_ = [
    '../_base_/datasets/coco_detection.py', '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
model = dict(
    type='RetinaNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(
        type='visionattn.TimmBackbone', model_name='biformer_small', pretrained=True, drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3), norm_eval=True,
        model_kwargs=dict(n_win=16, pad_mode='upstream', feature_norms=True)),
    neck=dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=256, start_level=1,
              add_extra_convs='on_input', num_outs=5),
    bbox_head=dict(
        type='RetinaHead', num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                              ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                  max_per_img=100))
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4))
