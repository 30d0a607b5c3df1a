"""DaViT, FocalNet and HaloNet as OpenMMLab backbones: a train step (loss, backward, gradients in the
backbone) and prediction inside tiny mmdet Mask R-CNN, mmseg UPerNet and mmpretrain classifiers; the
timm hub ids and reported results behind the model cards; every shipped config parsed with its heads
checked; a few training iterations of shipped configs on the demo data with small variants."""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

import visionattn.mm  # noqa: F401  (registers TimmBackbone, arms the mmcv stand-ins)
from conftest import REPO_ROOT

TINY_DAVIT = dict(model_name='davit_tiny', feature_norms=dict(type='layernorm2d', eps=1e-5),
                  model_kwargs=dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)))
# (Mask R-CNN backbone, UPerNet backbone) per family. timm's FocalNet and HaloNet entry points fix their
# widths, so their small variants stand in: FocalNet-T SRF (with the detection recipe's widened kernels)
# and LRF; timm's hybrid halonet26t and the paper's pure HaloNet-H0.
FAMILIES = {
    'davit': (TINY_DAVIT, TINY_DAVIT),
    'focalnet': (dict(model_name='focalnet_tiny_srf', feature_norms=dict(type='layernorm2d', eps=1e-5),
                      model_kwargs=dict(focal_windows=(9, 9, 9, 9))),
                 dict(model_name='focalnet_tiny_lrf', feature_norms=dict(type='layernorm2d', eps=1e-5))),
    'halonet': (dict(model_name='halonet26t', frozen_stages=1, norm_eval=True), dict(model_name='halonet_h0')),
}


@functools.lru_cache(maxsize=None)
def _stage_channels(model_name: str, model_kwargs_json: str) -> list[int]:
    from visionattn.mm.backbones import stage_feature_info
    return [s['num_chs'] for s in stage_feature_info(model_name, **json.loads(model_kwargs_json))]


def _channels(backbone: dict) -> list[int]:
    """Stage channels of a TimmBackbone config (meta-device build, cached)."""
    return _stage_channels(backbone['model_name'], json.dumps(dict(backbone.get('model_kwargs') or {}), sort_keys=True))


def tiny_mask_rcnn(backbone: dict, channels: int = 16) -> ConfigDict:
    """Mask R-CNN with 16-channel heads and few samples: the structure of the COCO configs, CPU-sized."""
    roi = dict(type='RoIAlign', sampling_ratio=0, use_torchvision=True)
    assigner = dict(type='MaxIoUAssigner', match_low_quality=True, ignore_iof_thr=-1)
    return ConfigDict(
        type='MaskRCNN',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=True, pad_size_divisor=32),
        backbone=dict(type='visionattn.TimmBackbone', **backbone),
        neck=dict(type='FPN', in_channels=_channels(backbone), out_channels=channels, num_outs=5),
        rpn_head=dict(
            type='RPNHead', in_channels=channels, feat_channels=channels,
            anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                                  strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True), loss_bbox=dict(type='L1Loss')),
        roi_head=dict(
            type='StandardRoIHead',
            bbox_roi_extractor=dict(type='SingleRoIExtractor', roi_layer=dict(roi, output_size=7),
                                    out_channels=channels, featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(type='Shared2FCBBoxHead', in_channels=channels, fc_out_channels=32, roi_feat_size=7,
                           num_classes=3, reg_class_agnostic=False,
                           bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                                           target_stds=[0.1, 0.1, 0.2, 0.2]),
                           loss_cls=dict(type='CrossEntropyLoss'), loss_bbox=dict(type='L1Loss')),
            mask_roi_extractor=dict(type='SingleRoIExtractor', roi_layer=dict(roi, output_size=14),
                                    out_channels=channels, featmap_strides=[4, 8, 16, 32]),
            mask_head=dict(type='FCNMaskHead', num_convs=1, in_channels=channels, conv_out_channels=channels,
                           num_classes=3, loss_mask=dict(type='CrossEntropyLoss', use_mask=True))),
        train_cfg=dict(
            rpn=dict(assigner=dict(assigner, pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
                     sampler=dict(type='RandomSampler', num=64, pos_fraction=0.5, neg_pos_ub=-1,
                                  add_gt_as_proposals=False),
                     allowed_border=-1, pos_weight=-1, debug=False),
            rpn_proposal=dict(nms_pre=200, max_per_img=100, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(assigner=dict(assigner, pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5),
                      sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1,
                                   add_gt_as_proposals=True),
                      mask_size=28, pos_weight=-1, debug=False)),
        test_cfg=dict(
            rpn=dict(nms_pre=100, max_per_img=50, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5), max_per_img=10, mask_thr_binary=0.5)))


def tiny_upernet(backbone: dict, channels: int = 16) -> ConfigDict:
    """UPerNet with an auxiliary FCN head, as the ADE20K configs, with 16-channel heads."""
    in_channels = _channels(backbone)
    return ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
                               size_divisor=32),
        backbone=dict(type='visionattn.TimmBackbone', **backbone),
        decode_head=dict(type='UPerHead', in_channels=in_channels, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=channels, num_classes=4, norm_cfg=dict(type='BN'), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(type='FCNHead', in_channels=in_channels[2], in_index=2, channels=channels, num_convs=1,
                            concat_input=False, num_classes=4, norm_cfg=dict(type='BN'), align_corners=False,
                            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))


def _detection_batch(height: int = 72, width: int = 88) -> dict:
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    samples = []
    for box in ([10, 12, 50, 60], [30, 8, 80, 40]):
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             scale_factor=(1.0, 1.0)))
        masks = np.zeros((1, height, width), np.uint8)
        masks[0, box[1]:box[3], box[0]:box[2]] = 1
        sample.gt_instances = InstanceData(bboxes=torch.tensor([box], dtype=torch.float32),
                                           labels=torch.tensor([1]), masks=BitmapMasks(masks, height, width))
        samples.append(sample)
    images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8) for _ in samples]
    return dict(inputs=images, data_samples=samples)


def _segmentation_batch(height: int = 64, width: int = 80) -> dict:
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, height, width)))
        samples.append(sample)
    images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8) for _ in samples]
    return dict(inputs=images, data_samples=samples)


def _train_step(model: torch.nn.Module, batch: dict) -> dict:
    model.train()
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert torch.isfinite(total)
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert any(p.grad.abs().sum() > 0 for p in trainable)
    return losses


def _mask_rcnn_case(family: str) -> tuple:
    return 'mmdet', tiny_mask_rcnn(FAMILIES[family][0]), _detection_batch(), \
        {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'}, lambda result: result.pred_instances.masks


def _upernet_case(family: str) -> tuple:
    return 'mmseg', tiny_upernet(FAMILIES[family][1]), _segmentation_batch(), \
        {'decode.loss_ce', 'aux.loss_ce'}, lambda result: result.pred_sem_seg.data


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('case', [_mask_rcnn_case, _upernet_case], ids=['mask_rcnn', 'upernet'])
def test_loss_backward_predict(case, family):
    """Train step (loss, backward, gradients reach the backbone) and prediction at the input size."""
    import importlib
    scope, cfg, batch, loss_names, prediction = case(family)
    init_default_scope(scope)
    model = importlib.import_module(f'{scope}.registry').MODELS.build(cfg)
    assert loss_names <= set(_train_step(model, batch))
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(batch), mode='predict')
    assert prediction(results[0]).shape[-2:] == batch['data_samples'][0].ori_shape


@pytest.mark.slow
@pytest.mark.parametrize('family', ['davit'])  # the adapter is the same for every model
def test_mmpretrain_image_classifier_loss_backward(family):
    """The same backbones under mmpretrain's ImageClassifier (pooling neck, linear head)."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')
    backbone = dict(FAMILIES[family][1], out_indices=(-1,))
    model = MODELS.build(dict(
        type='ImageClassifier',
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=5, mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True),
        backbone=dict(type='visionattn.TimmBackbone', **backbone),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=_channels(backbone)[-1])))
    batch = dict(inputs=[torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8) for _ in range(2)],
                 data_samples=[DataSample().set_gt_label(label) for label in (1, 3)])
    assert 'loss' in _train_step(model, batch)


@pytest.mark.parametrize('model_name', [
    'davit_tiny', 'davit_small', 'davit_base',
    'focalnet_tiny_srf', 'focalnet_small_srf', 'focalnet_base_srf',
    'focalnet_tiny_lrf', 'focalnet_small_lrf', 'focalnet_base_lrf',
    'halonet26t', 'halonet50ts',
])
def test_pretrained_source_is_a_timm_hub_id(model_name):
    """``pretrained=True`` in the configs resolves to these hub ids (downloaded where a hub is reachable)."""
    cfg = timm.models.get_pretrained_cfg(model_name)
    assert cfg.has_weights and cfg.hf_hub_id == f'timm/{model_name}.{cfg.tag}'


@pytest.mark.parametrize('family, names', [
    ('davit', {'davit_tiny', 'davit_small', 'davit_base'}),
    ('focalnet', {f'focalnet_{size}_{rf}' for size in ('tiny', 'small', 'base') for rf in ('srf', 'lrf')}),
    ('halonet', {f'halonet_h{i}' for i in range(8)} | {'halonet26t', 'halonet50ts'}),
])
def test_reported_results_cover_every_variant(family, names):
    """model_cards/reported/<family>.json follows CONTRIBUTING.md's schema for every usable variant."""
    reported = json.loads((REPO_ROOT / 'model_cards' / 'reported' / f'{family}.json').read_text())
    assert set(reported) == names and all(timm.is_model(name) for name in names)
    for entry in reported.values():
        assert set(entry['weights']) == {'source', 'license'}
        assert entry['results'] and all(
            set(res) == {'task', 'metric', 'value', 'setting', 'source'} and isinstance(res['value'], float)
            for res in entry['results'])


# --- the shipped configs -------------------------------------------------------------------------

CONFIGS = sorted(p for family in ('davit', 'focalnet', 'halonet') for p in (REPO_ROOT / 'configs' / family).glob('*.py'))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_parses_and_its_heads_match_the_backbone(path):
    from visionattn.mm.config import load_config
    model = load_config(str(path)).model
    if 'backbone' not in model:  # classification: the whole timm model
        assert timm.is_model(model.model_name)
        return
    backbone = model.backbone
    channels = _channels(backbone)
    head = model.get('neck') or model.decode_head
    assert list(head.in_channels) == channels
    if model.get('auxiliary_head'):
        assert model.auxiliary_head.in_channels == channels[2]
    # dense tasks start from the timm hub weights
    assert backbone.pretrained is True and timm.models.get_pretrained_cfg(backbone.model_name).has_weights


# --- a few training iterations of the shipped configs on the demo data, with small variants --------

DEMO_ROOTS = {'mmdet': 'coco', 'mmseg': 'ade/ADEChallengeData2016', 'mmpretrain': 'imagenet'}
TINY_DAVIT_KWARGS = TINY_DAVIT['model_kwargs']
# One training run per family and per task keeps this to a few minutes on 2 CPU cores. The other
# detection and segmentation pairings run their train step in test_loss_backward_predict; the other
# classification configs train timm's own models through the same TimmClassifier.
# config, image-size divisor (demo images are 64-128px), backbone / classifier overrides (small variants)
TRAIN_CASES = {
    'davit-cls': ('davit/davit_tiny_imagenet.py', 4, TINY_DAVIT_KWARGS),
    'focalnet-seg': ('focalnet/upernet_focalnet_tiny_srf_ade20k.py', 8, {}),
    'halonet-det': ('halonet/mask_rcnn_halonet26t_fpn_1x_coco.py', 8, {}),
}


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('demo')
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(root), '--num-train', '4',
                    '--num-val', '2'], cwd=REPO_ROOT, check=True, capture_output=True)
    return root


def _divide_sizes(node, divisor: int):
    """Every ``scale`` / ``scales`` / ``crop_size`` in a pipeline divided by ``divisor``."""
    if isinstance(node, dict):
        return {k: _divide_sizes(v, divisor) if k not in ('scale', 'scales', 'crop_size') else _divided(v, divisor)
                for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_divide_sizes(v, divisor) for v in node]
    return node


def _divided(value, divisor: int):
    if isinstance(value, (list, tuple)):
        return type(value)(_divided(v, divisor) for v in value)
    return max(int(value) // divisor, 8)


def _small_variant(cfg, divisor: int, overrides: dict) -> None:
    """Shrink a shipped config in place: small backbone, narrow heads, few RoIs, small images, batch 2,
    four training and two validation samples. Optimizer, augmentation and the rest stay as shipped."""
    model = cfg.model
    if 'backbone' in model:
        model.backbone.update(pretrained=False, **overrides)
        channels = _channels(model.backbone)
        if 'size' in model.data_preprocessor:  # mmseg pads batches to the crop size
            model.data_preprocessor.size = _divided(model.data_preprocessor.size, divisor)
    else:
        model.update(overrides)
    if 'roi_head' in model:
        roi = model.roi_head
        model.neck.update(in_channels=channels, out_channels=16)
        model.rpn_head.update(in_channels=16, feat_channels=16)
        roi.bbox_roi_extractor.out_channels = roi.mask_roi_extractor.out_channels = 16
        roi.bbox_head.update(in_channels=16, fc_out_channels=32)
        roi.mask_head.update(in_channels=16, conv_out_channels=16)
        model.train_cfg.rcnn.sampler.num, model.train_cfg.rpn.sampler.num = 32, 64
        model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
        model.test_cfg.rcnn.score_thr = 0.0  # an untrained detector scores below the usual 0.05
        cfg.train_dataloader.dataset.filter_cfg.min_size = 4  # the demo's objects are small
    if 'decode_head' in model:
        model.decode_head.update(in_channels=channels, channels=16)
        model.auxiliary_head.update(in_channels=channels[2], channels=16)
    for loader, samples in (('train_dataloader', 4), ('val_dataloader', 2)):
        cfg[loader].update(batch_size=2, num_workers=0, persistent_workers=False)
        cfg[loader].dataset.update(indices=samples, pipeline=_divide_sizes(cfg[loader].dataset.pipeline, divisor))
    cfg.test_dataloader = cfg.val_dataloader
    if cfg.train_cfg.get('max_iters'):
        cfg.train_cfg.update(max_iters=2, val_interval=2)
    else:
        cfg.train_cfg.update(max_epochs=1, val_interval=1)
    # schedulers that would start after the end (cosine after warm-up, poly after 1500 iterations) go
    cfg.param_scheduler = [s for s in cfg.param_scheduler if s.get('begin', 0) < 1]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = None  # writing weights and optimizer state is not what is tested


@pytest.mark.slow
@pytest.mark.parametrize('case', sorted(TRAIN_CASES))
def test_config_trains_on_demo_data(case, demo_root, tmp_path):
    from visionattn.mm.config import build_runner, load_config
    config, divisor, overrides = TRAIN_CASES[case]
    cfg = load_config(str(REPO_ROOT / 'configs' / config), work_dir=str(tmp_path))
    cfg = load_config(str(REPO_ROOT / 'configs' / config), work_dir=str(tmp_path),
                      data_root=str(demo_root / DEMO_ROOTS[cfg.default_scope]))
    _small_variant(cfg, divisor, overrides)
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter >= 2
    assert json.loads((tmp_path / 'metrics_val.json').read_text())['metrics']
