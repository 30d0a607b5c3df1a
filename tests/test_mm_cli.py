"""Config loading and the checks tools/train.py and tools/test.py run before building anything."""
from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

from conftest import REPO_ROOT
from visionattn.mm.config import ConfigError, check_data_roots, check_neck_channels, enable_prediction_pictures, \
    load_config

SEG = str(REPO_ROOT / 'configs/timm/upernet_resnet50_ade20k.py')
DET = str(REPO_ROOT / 'configs/timm/mask_rcnn_resnet50_fpn_1x_coco.py')
CLS = str(REPO_ROOT / 'configs/timm/resnet50_imagenet.py')


def test_cfg_options_are_applied_including_new_constructor_arguments():
    cfg = load_config(SEG, {'train_cfg.max_iters': 10, 'model.backbone.in_chans': 4,
                            'model.decode_head.channels': 64})
    assert cfg.train_cfg.max_iters == 10
    assert cfg.model.backbone.in_chans == 4
    assert cfg.model.decode_head.channels == 64


@pytest.mark.parametrize('key, message', [
    ('train_cfg.max_iter', r"IterBasedTrainLoop \(at train_cfg\) takes no argument 'max_iter'.*max_iters"),
    ('modle.backbone.model_name', r"the top level has no key 'modle'.*\['model'"),
    ('model.decode_head.in_chanels', r"UPerHead \(at model.decode_head\) takes no argument 'in_chanels'.*in_channels"),
    ('train_dataloader.dataset.pipeline.9.type', r'is a list of 7 items, so the next part must be an index 0..6'),
])
def test_bad_cfg_options_key_is_named_with_a_suggestion(key, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SEG, {key: 1})


def test_data_root_replaces_every_path_under_it(tmp_path):
    cfg = load_config(DET, data_root=str(tmp_path))
    assert cfg.train_dataloader.dataset.data_root.rstrip('/') == str(tmp_path)
    assert cfg.val_evaluator.ann_file == f'{tmp_path}/annotations/instances_val2017.json'


def test_missing_dataset_message_names_path_source_and_demo(tmp_path):
    cfg = load_config(CLS, data_root=str(tmp_path / 'imagenet'))
    with pytest.raises(FileNotFoundError) as err:
        check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    text = str(err.value)
    assert str(tmp_path / 'imagenet') in text and 'image-net.org' in text
    assert 'python tools/make_demo_data.py --out data/demo --tasks imagenet' in text


def test_neck_channel_mismatch_names_the_right_values():
    cfg = load_config(SEG, {'model.backbone.model_name': 'resnet18'})
    with pytest.raises(ConfigError, match=r'model.decode_head.in_channels is \[256, 512, 1024, 2048\].*'
                                          r'set model.decode_head.in_channels=\[64, 128, 256, 512\]'):
        check_neck_channels(cfg)
    cfg = load_config(DET, {'model.backbone.model_name': 'convnext_atto'})
    with pytest.raises(ConfigError, match=r'set model.neck.in_channels=\[40, 80, 160, 320\]'):
        check_neck_channels(cfg)
    cfg = load_config(SEG, {'model.backbone.model_name': 'resnet18',
                            'model.decode_head.in_channels': [64, 128, 256, 512]})
    with pytest.raises(ConfigError, match=r'set model.auxiliary_head.in_channels=256'):
        check_neck_channels(cfg)


def test_unknown_model_name_is_caught_before_building():
    cfg = load_config(SEG, {'model.backbone.model_name': 'biformer_smal'})
    with pytest.raises(KeyError, match="unknown timm model 'biformer_smal'"):
        check_neck_channels(cfg)


def test_prediction_pictures_for_each_task(tmp_path):
    for config, hook in ((SEG, 'SegVisualizationHook'), (DET, 'DetVisualizationHook'), (CLS, 'VisualizationHook')):
        cfg = load_config(config)
        folder = enable_prediction_pictures(cfg, str(tmp_path))
        assert cfg.default_hooks.visualization.type == hook
        assert Path(folder).is_relative_to(tmp_path)


def test_every_config_parses_and_its_channels_match():
    configs = sorted((REPO_ROOT / 'configs').rglob('*.py'))
    configs = [c for c in configs if '_base_' not in c.parts]
    assert configs
    for path in configs:
        cfg = load_config(str(path))
        assert cfg.get('custom_imports', {}).get('imports') == ['visionattn.mm'], path
        assert isinstance(cfg, Config)
        check_neck_channels(cfg)
