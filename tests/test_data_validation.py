"""Bad data stops with the file, what is wrong and what to do, in training and evaluation alike, through
the configs' own pipelines (ADE20K, COCO, ImageNet on their demo stand-ins); --skip-bad-samples leaves such
files out, logs them and counts them in the metrics JSON; an error inside a DataLoader worker reaches the
user as one line.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS
from PIL import Image

import visionattn.mm  # noqa: F401  (registers the visionattn scope)
from conftest import REPO_ROOT
from visionattn.demo_data import make_demo_data
from visionattn.errors import ConfigError, DataError, MissingFileError
from visionattn.mm.config import load_config
from visionattn.mm.transforms import LoadSegAnnotations
from visionattn.mm.validation import (SKIPPED_KEY, CheckedDataset, collate_skipping_bad_samples,
                                      enable_bad_sample_skipping)

SEG_CONFIG = 'configs/demo/upernet_resnet18_ade20k_demo.py'
ADE = 'ADEChallengeData2016'  # under the stand-in's ade/


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('validation_demo')
    make_demo_data(out, ['ade20k', 'coco', 'imagenet'], num_train=4, num_val=2)
    return out


def copy_of(demo: Path, tmp_path: Path, task: str) -> Path:
    shutil.copytree(demo / task, tmp_path / task)
    return tmp_path / task


def build(config: str, loader: str, data_root: Path, **dataset_options):
    """The dataset of ``loader`` in ``config`` on ``data_root`` (not serialized: mmengine's gc.collect() for it
    takes seconds in a process that has imported everything)."""
    cfg = load_config(str(REPO_ROOT / config), data_root=str(data_root))
    return DATASETS.build(dict(cfg[loader]['dataset'], serialize_data=False, **dataset_options))


def seg_datasets(demo: Path, tmp_path: Path) -> dict:
    """The training and validation datasets of the demo segmentation config, on a copy of the ADE20K stand-in."""
    root = copy_of(demo, tmp_path, 'ade') / ADE
    return {loader: build(SEG_CONFIG, loader, root) for loader in ('train_dataloader', 'val_dataloader')}


def save_mask(path: str, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


# --- images -------------------------------------------------------------------------------------------
def zero_bytes(path: str) -> None:
    Path(path).write_bytes(b'')


def truncated(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])


def not_an_image(path: str) -> None:
    Path(path).write_text('<html>404 Not Found</html>')


def removed(path: str) -> None:
    Path(path).unlink()


@pytest.mark.parametrize('damage, error, what', [
    (zero_bytes, DataError, r'is empty \(0 bytes\)'),
    (truncated, DataError, r'cannot be decoded as an image .*truncated'),
    (not_an_image, DataError, r'cannot be decoded as an image .*not an image file'),
    (removed, MissingFileError, 'does not exist'),
])
def test_a_bad_image_stops_training_and_evaluation_with_the_file_and_the_fix(demo, tmp_path, damage, error, what):
    for loader, dataset in seg_datasets(demo, tmp_path).items():
        path = dataset.get_data_info(0)['img_path']
        damage(path)
        with pytest.raises(error, match=f'{re.escape(path)} {what}.*--skip-bad-samples'):
            dataset[0]


@pytest.mark.parametrize('mask, message', [
    (np.full((128, 128), 200, np.uint8),  # ADE20K has 150 classes: file values 1..150 (0 = ignored)
     r'mask values \{199\} \(in the file: \{200\}\) are not class indices of this 150-class dataset'),
    (np.stack([np.full((128, 128), v, np.uint8) for v in (1, 2, 3)], -1), 'is a colour mask'),
    (np.ones((64, 96), np.uint8), r'is 64x96 \(HxW\) but its image .* is 128x128'),
])
def test_a_bad_mask_stops_training_and_evaluation(demo, tmp_path, mask, message):
    for loader, dataset in seg_datasets(demo, tmp_path).items():
        info = dataset.get_data_info(0)
        save_mask(info['seg_map_path'], mask)
        with pytest.raises(DataError, match=f'{re.escape(info["seg_map_path"])}:? {message}'):
            dataset[0]


def test_a_degenerate_image_stops_before_it_breaks_a_resize(demo, tmp_path):
    for loader, dataset in seg_datasets(demo, tmp_path).items():
        info = dataset.get_data_info(0)
        Image.fromarray(np.zeros((2, 1000, 3), np.uint8)).save(info['img_path'], 'JPEG')
        save_mask(info['seg_map_path'], np.ones((2, 1000), np.uint8))
        with pytest.raises(DataError, match=r'is 2x1000 pixels \(HxW\): its aspect ratio 500:1 exceeds max_aspect_ratio'):
            dataset[0]


def test_reduce_zero_label_keeps_the_ignore_index_as_mmseg_does(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'img.png')
    save_mask(str(tmp_path / 'mask.png'), np.array([[0, 1, 150, 255]] * 4, np.uint8))
    results = LoadSegAnnotations()(dict(img_path=str(tmp_path / 'img.png'), seg_map_path=str(tmp_path / 'mask.png'),
                                        ori_shape=(4, 4), seg_fields=[], reduce_zero_label=True, num_classes=150))
    assert results['gt_seg_map'][0].tolist() == [255, 0, 149, 255]


# --- splits and annotation files --------------------------------------------------------------------------
def test_an_image_without_its_mask_and_an_empty_split_stop_when_the_dataset_is_built(demo, tmp_path):
    root = copy_of(demo, tmp_path, 'ade')
    mask = root / ADE / 'annotations/training/ADE_train_00000002.png'
    mask.unlink()
    with pytest.raises(MissingFileError, match=f'ADE20KDataset: 1 of 4 images have no mask, e.g. .*{mask.name}'):
        build(SEG_CONFIG, 'train_dataloader', root / ADE)
    for image in (root / ADE / 'images/validation').iterdir():
        image.unlink()
    with pytest.raises(MissingFileError, match=r"ADE20KDataset: no images ending in '\.jpg' found in .*validation"):
        build(SEG_CONFIG, 'val_dataloader', root / ADE)


def test_coco_missing_annotation_file_empty_split_and_bad_image(demo, tmp_path):
    root = copy_of(demo, tmp_path, 'coco')
    config = 'configs/demo/mask_rcnn_resnet18_coco_demo.py'
    dataset = build(config, 'train_dataloader', root)
    path = dataset.get_data_info(0)['img_path']
    zero_bytes(path)
    with pytest.raises(DataError, match=f'{re.escape(path)} is empty'):
        dataset.prepare_data(0)
    annotations = root / 'annotations/instances_val2017.json'
    content = json.loads(annotations.read_text())
    annotations.write_text(json.dumps(dict(content, images=[], annotations=[])))
    with pytest.raises(MissingFileError, match='CocoDataset: the split is empty: no samples found in .*instances_val2017'):
        build(config, 'val_dataloader', root)
    annotations.unlink()
    with pytest.raises(MissingFileError, match=f'CocoDataset: annotation file {re.escape(str(annotations))} does not'):
        build(config, 'val_dataloader', root)


def test_imagenet_empty_split_and_bad_image(demo, tmp_path):
    root = copy_of(demo, tmp_path, 'imagenet')
    config = 'configs/demo/resnet18_imagenet_demo.py'
    dataset = build(config, 'val_dataloader', root)
    path = dataset.get_data_info(0)['img_path']
    truncated(path)
    with pytest.raises(DataError, match=f'{re.escape(path)} cannot be decoded'):
        dataset[0]
    (root / 'meta/val.txt').write_text('')
    with pytest.raises(MissingFileError, match='ImageNet: the split is empty'):
        build(config, 'val_dataloader', root)


def test_every_config_loads_its_data_through_the_validation_layer():
    """Every dataset a config names is a CheckedDataset, and every image and mask loader a checked one: the
    configs that define pipelines are the dataset bases and the demos; the rest inherit theirs."""
    from mmcv.transforms import LoadImageFromFile as StockLoadImage
    from mmengine.registry import TRANSFORMS
    from mmseg.datasets.transforms import LoadAnnotations as StockLoadSegAnnotations

    from visionattn.mm.transforms import LoadImageFromFile, LoadMultiBandImage
    defining = [*sorted((REPO_ROOT / 'configs/_base_/datasets').glob('*.py')),
                *sorted((REPO_ROOT / 'configs/demo').glob('*.py'))]
    for path in sorted((REPO_ROOT / 'configs').rglob('*.py')):
        if path not in defining:
            assert not re.search(r"type='(visionattn\.)?(LoadImageFromFile|LoadAnnotations|LoadSegAnnotations)'",
                                 path.read_text()), f'{path} defines its own loaders: check them here'
    for path in defining:
        cfg = Config.fromfile(str(path))
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            dataset = cfg[loader]['dataset']
            with DATASETS.switch_scope_and_registry(cfg.default_scope) as registry:
                assert issubclass(registry.get(dataset['type']), CheckedDataset), (path.name, loader)
            with TRANSFORMS.switch_scope_and_registry(cfg.default_scope) as registry:
                classes = {registry.get(t['type']) for t in dataset['pipeline']}
            assert classes & {LoadImageFromFile, LoadMultiBandImage}, (path.name, loader)
            assert not classes & {StockLoadImage, StockLoadSegAnnotations}, (path.name, loader)


def test_an_error_in_a_dataloader_worker_keeps_its_one_line_message(demo, tmp_path):
    dataset = build(SEG_CONFIG, 'val_dataloader', copy_of(demo, tmp_path, 'ade') / ADE)
    path = dataset.get_data_info(0)['img_path']
    zero_bytes(path)
    with pytest.raises(DataError) as caught:
        next(iter(torch.utils.data.DataLoader(dataset, num_workers=1, collate_fn=lambda batch: batch)))
    assert str(caught.value).startswith(f'{path} is empty (0 bytes). Copy the file again')
    assert '\n' not in str(caught.value)
    assert caught.value.__notes__[0].startswith('Caught DataError in DataLoader worker process 0.')  # for --debug


# --- skipping bad samples ---------------------------------------------------------------------------------
def test_skipping_replaces_bad_training_samples_and_leaves_bad_evaluation_samples_out(demo, tmp_path):
    root = copy_of(demo, tmp_path, 'ade') / ADE
    train = build(SEG_CONFIG, 'train_dataloader', root, on_bad_sample='replace')
    val = build(SEG_CONFIG, 'val_dataloader', root, on_bad_sample='drop')
    bad_train, bad_val = train.get_data_info(0)['img_path'], val.get_data_info(0)['img_path']
    zero_bytes(bad_train)
    zero_bytes(bad_val)

    sample = train[0]  # another training sample in its place, carrying the skipped file's message
    assert isinstance(sample['inputs'], torch.Tensor) and sample['data_samples'].img_path != bad_train
    (message,) = set(sample[SKIPPED_KEY])  # drawn once, or again by chance
    assert message.startswith(f'{bad_train} is empty') and '--skip-bad-samples' not in message

    dropped = val[0]
    assert list(dropped) == [SKIPPED_KEY] and dropped[SKIPPED_KEY][0].startswith(f'{bad_val} is empty')
    batch = collate_skipping_bad_samples([val[0], val[1]])
    assert len(batch['inputs']) == 1 and batch[SKIPPED_KEY] == dropped[SKIPPED_KEY]
    assert collate_skipping_bad_samples([val[0]]) == dropped  # nothing left: the loop passes over it


def test_skipping_needs_the_checked_datasets(tmp_path):
    cfg = Config.fromfile(str(REPO_ROOT / SEG_CONFIG))
    enable_bad_sample_skipping(cfg, ('train_dataloader', 'val_dataloader'))
    assert cfg.train_dataloader.dataset.on_bad_sample == 'replace' and cfg.val_dataloader.dataset.on_bad_sample == 'drop'
    assert cfg.val_cfg.type == 'visionattn.SkippingValLoop'
    assert dict(type='visionattn.SkippedSamplesHook') in cfg.custom_hooks
    cfg.val_dataloader.dataset.type = 'ADE20KDataset'  # mmseg's own: cannot skip
    with pytest.raises(ConfigError, match="val_dataloader uses the dataset 'ADE20KDataset', which cannot skip"):
        enable_bad_sample_skipping(cfg, ('val_dataloader',))


def outputs(work_dir: Path) -> dict[str, str]:
    """Digests of the checkpoints and metrics in ``work_dir`` (each run also dumps its own config there)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in work_dir.iterdir()
            if p.suffix == '.pth' or p.name == 'last_checkpoint' or p.name.startswith('metrics_')}


@pytest.mark.slow
def test_train_skips_bad_files_or_stops_with_one_line_and_keeps_what_it_wrote(demo, tmp_path, capsys):
    """tools/train.py in process (two 2-iteration runs of the demo segmentation config, data loaded in worker
    processes): with --skip-bad-samples the bad training and validation files are logged and counted in
    metrics_val.json; without it the run stops with the worker's one-line message and exit status 2, and the
    checkpoint and metrics of the first run are untouched."""
    from visionattn.cli.train import main
    root = copy_of(demo, tmp_path, 'ade') / ADE
    bad_train = root / 'images/training/ADE_train_00000003.jpg'
    bad_val = root / 'annotations/validation/ADE_val_00000001.png'
    zero_bytes(str(bad_train))
    save_mask(str(bad_val), np.full((128, 128), 200, np.uint8))
    work_dir = tmp_path / 'work'
    common = [SEG_CONFIG, '--work-dir', str(work_dir), '--data-root', str(root), '--seed', '0', '--cfg-options',
              'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2', 'train_dataloader.batch_size=2',
              'val_dataloader.batch_size=1']

    main([*common, 'train_cfg.val_interval=2', '--skip-bad-samples'])
    log = capsys.readouterr()
    assert re.search(f'skipped a bad train sample .*{re.escape(str(bad_train))} is empty', log.out + log.err)
    assert re.search(f'skipped a bad val sample .*{re.escape(str(bad_val))}: mask values', log.out + log.err)
    record = json.loads((work_dir / 'metrics_val.json').read_text())
    assert record['skipped_bad_samples'] == dict(train=1, val=1) and 'mIoU' in record['metrics']
    written = outputs(work_dir)
    assert {'iter_2.pth', 'last_checkpoint', 'metrics_val.json'} <= set(written)

    with pytest.raises(SystemExit) as stopped:
        main([*common, 'train_cfg.val_interval=1'])
    log = capsys.readouterr()
    assert stopped.value.code == 2
    last_line = log.err.rstrip().splitlines()[-1]  # the bad file met first: in training or in validation
    assert last_line in (
        f'error: {bad_train} is empty (0 bytes). Copy the file again from the dataset source (it may be a partial '
        'download or extraction) or remove it from the split. To leave out such files instead (each is logged and '
        'counted in the metrics JSON), run with --skip-bad-samples.',
        f'error: {bad_val}: mask values {{199}} (in the file: {{200}}) are not class indices of this 150-class dataset '
        '(values present after loading: {199}). reduce_zero_label=True shifts values down by one (0 becomes '
        'ignored); masks must hold class indices 0..149 (and 255 = ignore), not colours or original label ids: remap '
        "them, or use the dataset's label_map. To leave out such files instead (each is logged and counted in the "
        'metrics JSON), run with --skip-bad-samples.')
    assert 'Caught' not in log.out + log.err and 'Traceback' not in log.out + log.err
    assert outputs(work_dir) == written
