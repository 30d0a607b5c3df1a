"""Config loading and the checks tools/train.py and tools/test.py run before building anything."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO_ROOT
from visionattn.errors import MissingFileError, UnknownNameError
from visionattn.mm.config import ConfigError, check_data_roots, check_model, check_neck_channels, \
    enable_prediction_pictures, enable_tensorboard, load_config, resolve_config

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
    assert 'python -m visionattn.cli.make_demo_data --out data/demo --tasks imagenet' in text
    assert '--data-root data/demo/imagenet\n' in text + '\n'


def test_missing_demo_data_hint_names_the_demo_root_once(tmp_path):
    """The demo configs already point into data/demo: the hint must not double it (data/demo/demo/...)."""
    cfg = load_config(str(REPO_ROOT / 'configs/demo/biformer_tiny_ade20k_demo.py'), data_root=str(tmp_path / 'x'))
    with pytest.raises(MissingFileError, match=r'--data-root data/demo/ade/ADEChallengeData2016$'):
        check_data_roots(cfg, ('train_dataloader',))


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
    with pytest.raises(UnknownNameError, match="unknown timm model 'biformer_smal'"):
        check_model(cfg)
    cfg = load_config(CLS, {'model.model_name': 'resnet5'})  # a whole timm model as the classifier
    with pytest.raises(UnknownNameError, match=r"unknown timm model 'resnet5'. Did you mean \['resnet50'"):
        check_model(cfg)


@pytest.mark.parametrize('options, message', [
    ({'model.backbone.out_indices': 5}, r'model.backbone: out_indices must be a non-empty list or tuple of stage '
                                        r'numbers.*got 5: resnet50 has 4 stages, so out_indices are in 0..3'),
    ({'model.backbone.out_indices': (0, 1, 4)}, r'\[4\] out of range; resnet50 has 4 stages'),
    ({'model.backbone.frozen_stages': 5}, r'frozen_stages must be an int in -1..4 for resnet50'),
    ({'model.backbone.out_indices': (1, 2, 3)}, r'model.decode_head.in_index \[0, 1, 2, 3\] picks backbone outputs '
                                                r'that do not exist: .* gives 3 outputs \(indices 0..2'),
])
def test_backbone_options_are_checked_with_the_valid_range(options, message):
    with pytest.raises(ConfigError, match=message):
        check_model(load_config(SEG, options))


def test_configs_are_found_by_path_or_by_name_from_any_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    demo = (REPO_ROOT / 'configs/demo/biformer_tiny_ade20k_demo.py').resolve()
    for name in ('demo/biformer_tiny_ade20k_demo', 'demo/biformer_tiny_ade20k_demo.py', 'biformer_tiny_ade20k_demo',
                 'biformer_tiny_ade20k_demo.py', 'configs/demo/biformer_tiny_ade20k_demo.py', str(demo)):
        assert resolve_config(name).resolve() == demo, name
    assert load_config('biformer_tiny_ade20k_demo').work_dir == 'work_dirs/biformer_tiny_ade20k_demo'
    with pytest.raises(MissingFileError, match=r"config biformer_tiny_ade20k_dem is neither a file nor a config "
                                               r"shipped with visionattn.*Did you mean \['demo/biformer_tiny_ade20k_demo'"):
        resolve_config('biformer_tiny_ade20k_dem')


def test_config_errors_name_the_file_and_line(tmp_path):
    base = tmp_path / 'base.py'
    base.write_text("model = dict(\n    backbone=dict(type='x'),,\n)\n")
    child = tmp_path / 'child.py'
    child.write_text("_base_ = './base.py'\nx = 1\n")
    with pytest.raises(ConfigError, match=rf'syntax error in config {base}, line 2: invalid syntax'):
        load_config(str(child))
    child.write_text("_base_ = './nowhere.py'\n")
    with pytest.raises(ConfigError, match=rf'config {child}: its _base_ file {tmp_path}/nowhere.py does not exist'):
        load_config(str(child))
    base.write_text("a = 1\nb = undefined_name\n")
    child.write_text("_base_ = './base.py'\n")
    with pytest.raises(ConfigError, match=rf"config {base}, line 2: NameError: name 'undefined_name' is not defined"):
        load_config(str(child))
    base.write_text("a = 1\n")
    child.write_text("_base_ = './base.py'\nb = {{_base_.nope}}\n")
    with pytest.raises(ConfigError, match=r'\{\{_base_.nope\}\} names no variable of its bases'):
        load_config(str(child))


def test_tensorboard_adds_mmengines_backend_once():
    cfg = load_config(SEG)
    enable_tensorboard(cfg)
    enable_tensorboard(cfg)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend', 'TensorboardVisBackend']


def test_prediction_pictures_for_each_task(tmp_path):
    for config, hook in ((SEG, 'SegVisualizationHook'), (DET, 'DetVisualizationHook'), (CLS, 'VisualizationHook')):
        cfg = load_config(config)
        folder = enable_prediction_pictures(cfg, str(tmp_path))
        assert cfg.default_hooks.visualization.type == hook
        assert Path(folder).is_relative_to(tmp_path)
