"""Medical and remote-sensing data: public layouts, 16-bit and multi-band reading, in_chans adaptation, and
the errors users meet most (masks that are not class indices, band counts, image/mask sizes, empty splits).

The dataset layouts come from tools/make_demo_data.py's makers, run in process on a few images.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import visionattn.demo_data
import visionattn.mm  # noqa: F401  (registers the visionattn scope)
from conftest import REPO_ROOT
from visionattn.mm.datasets import (ClassFolderDataset, DIORDataset, EuroSATDataset, ISIC2018Task1Dataset,
                                    ISIC2018Task3Dataset, KvasirSEGDataset, LoveDADataset, NWPURESISC45Dataset,
                                    PotsdamDataset, split_members)
from visionattn.mm.transforms import Albumentations, LoadMultiBandImage, LoadSegAnnotations

# (train, val) counts per maker: enough for every split fraction of the configs to be non-empty.
COUNTS = {'kvasir_seg': (6, 2), 'isic2018_task1': (3, 2), 'isic2018_task3': (2, 1), 'loveda': (4, 2),
          'potsdam': (3, 2), 'dior': (3, 2), 'eurosat': (6, 2), 'eurosat_ms': (3, 1), 'nwpu_resisc45': (2, 4)}


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('domains')
    tool = visionattn.demo_data
    for task, (num_train, num_val) in COUNTS.items():
        size = min(tool.DEFAULT_SIZES[task][0], 64)
        tool.MAKERS[task](out, np.random.default_rng([0, tool.TASK_STREAMS[task]]), size, num_train, num_val)
    return out


def seg_sample(dataset, index: int = 0, **load_kwargs) -> dict:
    info = dataset.get_data_info(index)
    results = LoadMultiBandImage()(dict(info))
    return LoadSegAnnotations(**load_kwargs)(results)


# --- splits ------------------------------------------------------------------------------------------
def test_split_members_is_a_seeded_partition():
    names = [f'img_{i}.jpg' for i in range(37)]
    fractions = dict(train=0.6, val=0.2, test=0.2)
    parts = {s: split_members(names, s, fractions, seed=3) for s in fractions}
    assert sorted(i for p in parts.values() for i in p) == list(range(37))
    assert [len(p) for p in parts.values()] == [22, 8, 7]  # cuts at round(22.2), round(29.6)
    shuffled = names[::-1]  # same names listed in another order: same members
    assert {names[i] for i in parts['val']} == {shuffled[i] for i in split_members(shuffled, 'val', fractions, 3)}
    assert split_members(names, 'val', fractions, seed=4) != parts['val']
    with pytest.raises(ValueError, match='sum to 1'):
        split_members(names, 'train', dict(train=0.5, val=0.2))
    with pytest.raises(KeyError, match="'tset'"):
        split_members(names, 'tset', fractions)


def test_class_folder_split_is_stratified_and_disjoint(demo):
    kwargs = dict(data_root=str(demo / 'EuroSAT'), data_prefix='2750', split_fractions=dict(train=0.6, val=0.2, test=0.2))
    splits = {s: EuroSATDataset(split=s, **kwargs) for s in ('train', 'val', 'test')}
    for split, count in (('train', 6), ('val', 2), ('test', 2)):  # 10 images per class
        labels = [splits[split].get_data_info(i)['gt_label'] for i in range(len(splits[split]))]
        assert np.bincount(labels, minlength=10).tolist() == [count] * 10
    paths = [{d['img_path'] for d in ds.load_data_list()} for ds in splits.values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    forest = [d for d in splits['train'].load_data_list() if '/Forest/' in d['img_path']]
    assert {d['gt_label'] for d in forest} == {EuroSATDataset.METAINFO['classes'].index('Forest')}


def test_class_folder_labels_follow_the_class_list_not_folder_order(tmp_path):
    for name in ('benign', 'malignant'):
        (tmp_path / name).mkdir()
        Image.new('RGB', (8, 8)).save(tmp_path / name / f'{name}_1.png')
    dataset = ClassFolderDataset(data_root=str(tmp_path), metainfo=dict(classes=('malignant', 'benign')))
    assert {Path(d['img_path']).parent.name: d['gt_label'] for d in dataset.load_data_list()} == \
        dict(malignant=0, benign=1)


def test_class_folder_errors_name_the_problem(tmp_path, demo):
    with pytest.raises(ValueError, match=r"classes without a folder \['wetland'\]"):
        root = tmp_path / 'nwpu'
        shutil.copytree(demo / 'NWPU-RESISC45', root)
        shutil.rmtree(root / 'wetland')
        NWPURESISC45Dataset(data_root=str(root))
    (tmp_path / 'own' / 'cats').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='no images with extensions'):
        ClassFolderDataset(data_root=str(tmp_path / 'own'))
    with pytest.raises(ValueError, match='go together'):
        ClassFolderDataset(data_root=str(tmp_path / 'own'), split='train')


# --- segmentation layouts -------------------------------------------------------------------------
def test_kvasir_jpeg_masks_binarise_and_unthresholded_masks_are_refused(demo):
    fractions = dict(train=0.8, val=0.1, test=0.1)
    kwargs = dict(data_root=str(demo / 'Kvasir-SEG'), data_prefix=dict(img_path='images', seg_map_path='masks'),
                  split_fractions=fractions)
    sizes = [len(KvasirSEGDataset(split=s, **kwargs)) for s in fractions]
    assert sizes == [8, 1, 1]  # 10 images, seeded 80/10/10
    dataset = KvasirSEGDataset(split='train', **kwargs)
    raw = np.asarray(Image.open(dataset.get_data_info(0)['seg_map_path']))
    assert raw.ndim == 3 and len(np.unique(raw)) > 2  # RGB JPEG with compression noise, as in Kvasir-SEG
    sample = seg_sample(dataset, binary_threshold=128)
    assert set(np.unique(sample['gt_seg_map'])) == {0, 1}
    assert sample['gt_seg_map'].shape == sample['img'].shape[:2]
    with pytest.raises(ValueError, match='binary_threshold=128'):
        seg_sample(dataset)


def test_isic2018_task1_folders(demo):
    counts = {}
    for split in ('Training', 'Validation', 'Test'):
        dataset = ISIC2018Task1Dataset(data_root=str(demo / 'ISIC2018'),
                                       data_prefix=dict(img_path=f'ISIC2018_Task1-2_{split}_Input',
                                                        seg_map_path=f'ISIC2018_Task1_{split}_GroundTruth'))
        counts[split] = len(dataset)
    assert counts == dict(Training=3, Validation=2, Test=2)
    assert dataset.get_data_info(0)['seg_map_path'].endswith('_segmentation.png')
    assert set(np.unique(seg_sample(dataset, binary_threshold=128)['gt_seg_map'])) == {0, 1}


def test_loveda_reads_the_unzipped_layout_by_domain(demo):
    kwargs = dict(data_root=str(demo / 'LoveDA'), data_prefix=dict(img_path='Train', seg_map_path='Train'))
    both = LoveDADataset(**kwargs)
    rural = LoveDADataset(domains=('Rural',), **kwargs)
    assert len(both) == 4 and len(rural) == 2
    assert all('/Rural/images_png/' in rural.get_data_info(i)['img_path'] for i in range(len(rural)))
    mask = seg_sample(both)['gt_seg_map']
    raw = np.asarray(Image.open(both.get_data_info(0)['seg_map_path']))
    assert (mask[raw == 0] == 255).all() and np.array_equal(mask[raw > 0], raw[raw > 0] - 1)  # no-data ignored
    with pytest.raises(ValueError, match="'Urban' and 'Rural'"):
        LoveDADataset(domains=('urban',), **kwargs)


def test_potsdam_converted_layout(demo):
    dataset = PotsdamDataset(data_root=str(demo / 'potsdam'),
                             data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'))
    assert len(dataset) == 2 and dataset.get_data_info(0)['num_classes'] == 6
    assert set(np.unique(seg_sample(dataset)['gt_seg_map'])) <= {*range(6), 255}


def test_missing_masks_and_empty_splits_are_reported(tmp_path, demo):
    root = tmp_path / 'Kvasir-SEG'
    shutil.copytree(demo / 'Kvasir-SEG', root)
    victim = sorted((root / 'masks').iterdir())[0]
    victim.unlink()
    kwargs = dict(data_root=str(root), data_prefix=dict(img_path='images', seg_map_path='masks'))
    with pytest.raises(FileNotFoundError, match=f'1 of 10 images have no mask, e.g. .*{victim.name}'):
        KvasirSEGDataset(**kwargs)
    for path in (root / 'images').iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"KvasirSEGDataset: no images ending in '\.jpg' found in"):
        KvasirSEGDataset(**kwargs)


# --- detection and classification layouts ---------------------------------------------------------
def test_dior_layout_matches_names_case_insensitively(demo):
    dataset = DIORDataset(data_root=str(demo / 'DIOR'), ann_file='ImageSets/Main/test.txt',
                          data_prefix=dict(sub_data_root=''), img_subdir='JPEGImages-test', test_mode=True)
    assert len(dataset) == 2 and Path(dataset.get_data_info(0)['img_path']).is_file()
    assert '/JPEGImages-test/' in dataset.get_data_info(0)['img_path']
    names = [dataset.metainfo['classes'][inst['bbox_label']]
             for i in range(len(dataset)) for inst in dataset.get_data_info(i)['instances']]
    assert names and set(names) <= {'airplane', 'ship', 'storagetank', 'Expressway-Service-area'}


def test_dior_unknown_object_names_and_empty_splits_are_errors(tmp_path, demo):
    root = tmp_path / 'DIOR'
    shutil.copytree(demo / 'DIOR', root)
    kwargs = dict(data_root=str(root), ann_file='ImageSets/Main/train.txt', data_prefix=dict(sub_data_root=''))
    xml = next(p for p in sorted((root / 'Annotations' / 'Horizontal Bounding Boxes').iterdir())
               if '<name>' in p.read_text())
    text = xml.read_text()
    xml.write_text(re.sub(r'<name>[^<]*</name>', '<name>EXPRESSWAY-service-AREA</name>', text, count=1))
    dataset = DIORDataset(**kwargs)
    instances = next(d['instances'] for d in dataset.load_data_list() if d['img_id'] == xml.stem)
    assert instances[0]['bbox_label'] == DIORDataset.METAINFO['classes'].index('Expressway-Service-area')
    xml.write_text(re.sub(r'<name>[^<]*</name>', '<name>aeroplane</name>', text, count=1))
    with pytest.raises(ValueError, match=f"'aeroplane' in {xml.stem}.jpg is not a DIOR class"):
        DIORDataset(**kwargs)
    (root / 'ImageSets' / 'Main' / 'val.txt').write_text('')
    with pytest.raises(FileNotFoundError, match='no image ids found in .*val.txt'):
        DIORDataset(**dict(kwargs, ann_file='ImageSets/Main/val.txt'))


def test_isic2018_task3_reads_one_hot_csv(tmp_path, demo):
    root = demo / 'ISIC2018'
    dataset = ISIC2018Task3Dataset(data_root=str(root), data_prefix='ISIC2018_Task3_Validation_Input',
                                   ann_file='ISIC2018_Task3_Validation_GroundTruth/ISIC2018_Task3_Validation_GroundTruth.csv')
    labels = [dataset.get_data_info(i)['gt_label'] for i in range(len(dataset))]
    assert np.bincount(labels).tolist() == [1, 2, 1, 1, 1, 1, 1]  # one per class, NV doubled
    bad = tmp_path / 'gt.csv'
    bad.write_text('image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_0024306,1.0,1.0,0.0,0.0,0.0,0.0,0.0\n')
    with pytest.raises(ValueError, match='has 2 positive classes'):
        ISIC2018Task3Dataset(data_root=str(root), data_prefix='ISIC2018_Task3_Training_Input', ann_file=str(bad))


# --- loading: 16-bit, multi-band, masks ----------------------------------------------------------
def test_multiband_tiff_reads_the_same_in_either_planar_layout(tmp_path):
    bands = (np.arange(13 * 6 * 5, dtype=np.uint16).reshape(13, 6, 5) * 97) % 60000
    tifffile.imwrite(tmp_path / 'planar.tif', bands, photometric='minisblack', planarconfig='separate')
    tifffile.imwrite(tmp_path / 'contig.tif', bands.transpose(1, 2, 0), photometric='minisblack', planarconfig='contig')
    for name in ('planar.tif', 'contig.tif'):
        out = LoadMultiBandImage(num_bands=13)(dict(img_path=str(tmp_path / name)))
        assert out['img'].dtype == np.uint16 and out['img'].shape == (6, 5, 13) and out['ori_shape'] == (6, 5)
        assert np.array_equal(out['img'], bands.transpose(1, 2, 0))
    picked = LoadMultiBandImage(bands=(3, 2, 1), num_bands=3)(dict(img_path=str(tmp_path / 'planar.tif')))['img']
    assert np.array_equal(picked, bands[[3, 2, 1]].transpose(1, 2, 0))


def test_band_count_that_does_not_match_the_config_is_an_error(tmp_path, demo):
    path = next((demo / 'EuroSATallBands').rglob('*.tif'))
    with pytest.raises(ValueError, match='has 13 band.* but the config expects 12.* in_chans'):
        LoadMultiBandImage(num_bands=12)(dict(img_path=str(path)))
    with pytest.raises(ValueError, match=r'asks for \[13\]'):
        LoadMultiBandImage(bands=(0, 13))(dict(img_path=str(path)))


def test_16bit_and_grey_png_keep_their_values_and_rgb_comes_in_file_order(tmp_path):
    grey16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)
    cv2.imwrite(str(tmp_path / 'grey16.png'), grey16)
    out = LoadMultiBandImage(num_bands=1)(dict(img_path=str(tmp_path / 'grey16.png')))['img']
    assert out.dtype == np.uint16 and out.shape == (20, 30, 1) and np.array_equal(out[..., 0], grey16)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / 'red.png')
    assert LoadMultiBandImage()(dict(img_path=str(tmp_path / 'red.png')))['img'][0, 0].tolist() == [200, 0, 0]


def seg_results(tmp_path: Path, image_hw: tuple[int, int], mask: np.ndarray, num_classes: int = 3, **extra) -> dict:
    Image.fromarray(np.zeros((*image_hw, 3), np.uint8)).save(tmp_path / 'img.png')
    if mask.dtype == np.uint16:
        cv2.imwrite(str(tmp_path / 'mask.png'), mask)
    else:
        Image.fromarray(mask).save(tmp_path / 'mask.png')
    results = LoadMultiBandImage()(dict(img_path=str(tmp_path / 'img.png')))
    return dict(results, seg_map_path=str(tmp_path / 'mask.png'), seg_fields=[], num_classes=num_classes,
                reduce_zero_label=False, **extra)


def test_masks_that_are_not_class_indices_are_refused(tmp_path):
    mask = np.zeros((8, 8), np.uint16)
    mask[0, :3] = (1, 2, 300)  # a 16-bit label id: mmseg's uint8 cast would silently make it 44
    with pytest.raises(ValueError, match=r'mask values \{300\} are not class indices of this 3-class dataset'):
        LoadSegAnnotations()(seg_results(tmp_path, (8, 8), mask))
    good = LoadSegAnnotations()(seg_results(tmp_path, (8, 8), np.where(mask == 300, 255, mask).astype(np.uint8)))
    assert set(np.unique(good['gt_seg_map'])) == {0, 1, 2, 255} and 'gt_seg_map' in good['seg_fields']
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[:4] = (255, 0, 0)  # a colour-coded label image
    with pytest.raises(ValueError, match='colour mask .*potsdam.py'):
        LoadSegAnnotations()(seg_results(tmp_path, (8, 8), colour))


def test_mask_of_another_size_than_its_image_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r'is 8x8 \(HxW\) but its image .* is 8x10'):
        LoadSegAnnotations()(seg_results(tmp_path, (8, 10), np.zeros((8, 8), np.uint8)))


def test_albumentations_keeps_16bit_values_and_refuses_unknown_arguments():
    img = np.full((16, 16, 13), 3000, np.uint16)
    brighten = Albumentations([dict(type='RandomBrightnessContrast', brightness_limit=(0.1, 0.1), contrast_limit=0,
                                    p=1.0)], max_value=10000)
    out = brighten(dict(img=img.copy()))['img']
    assert out.dtype == np.float32 and np.allclose(out, 4000)  # +0.1 of max_value, not clipped to 1
    mask = np.zeros((16, 12), np.uint8)
    mask[0] = 1
    transposed = Albumentations([dict(type='Transpose', p=1.0)])(dict(img=np.zeros((16, 12, 4), np.uint8),
                                                                    gt_seg_map=mask))
    assert transposed['img_shape'] == (12, 16) and transposed['img'].shape == (12, 16, 4)
    assert transposed['gt_seg_map'][:, 0].sum() == 12  # the labelled row moved with the image
    with pytest.raises(ValueError, match="'var_limit' are not valid for transform GaussNoise"):
        Albumentations([dict(type='GaussNoise', var_limit=(10, 50))])
    with pytest.raises(ValueError, match='no transform .*JpegCompression'):
        Albumentations([dict(type='JpegCompression')])
    with pytest.raises(ValueError, match='set max_value'):
        Albumentations([dict(type='RandomGamma', p=1.0)])(dict(img=np.full((4, 4, 2), 7.0, np.float32)))


# --- pretrained weights for any in_chans ----------------------------------------------------------
@pytest.mark.parametrize('in_chans', [1, 4, 13])
def test_pretrained_rgb_stem_is_adapted_to_the_band_count(tmp_path, in_chans):
    """timm's adapt_input_conv: 1 band sums the RGB filters; n bands repeat R, G, B cyclically, scaled by 3/n."""
    import timm
    from visionattn.registry import MODELS
    rgb = timm.create_model('test_resnet')
    torch.save(rgb.state_dict(), tmp_path / 'rgb.pth')
    model = MODELS.build(dict(type='visionattn.TimmClassifier', model_name='test_resnet', num_classes=5,
                              in_chans=in_chans, pretrained=str(tmp_path / 'rgb.pth')))
    model.init_weights()  # pretrained weights load here (OpenMMLab's convention), never at construction
    source = rgb.conv1[0].weight
    expected = source.sum(1, keepdim=True) if in_chans == 1 else \
        source[:, [c % 3 for c in range(in_chans)]] * (3 / in_chans)
    assert torch.allclose(model.model.conv1[0].weight, expected)
    assert torch.equal(model.model.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)  # the rest loaded unchanged


# --- config checks ----------------------------------------------------------------------------------
def test_missing_dataset_names_its_source_and_the_stand_in(tmp_path):
    from visionattn.mm.config import check_data_roots, load_config
    cfg = load_config(str(REPO_ROOT / 'configs/medical/upernet_convnext_tiny_kvasir_seg.py'),
                      data_root=str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError) as error:
        check_data_roots(cfg, ('train_dataloader',))
    assert 'datasets.simula.no/kvasir-seg' in str(error.value) and '--tasks kvasir_seg' in str(error.value)
    assert 'data/demo/' in str(error.value)


def test_band_counts_must_agree_across_loader_model_and_preprocessor():
    from visionattn.mm.config import ConfigError, check_band_counts, load_config
    config = str(REPO_ROOT / 'configs/remote_sensing/resnet50_eurosat_ms.py')
    check_band_counts(load_config(config))
    with pytest.raises(ConfigError, match='in_chans of the model = 12, model.data_preprocessor.mean .* = 13'):
        check_band_counts(load_config(config, {'model.in_chans': 12}))


@pytest.mark.parametrize('config', sorted(str(p.relative_to(REPO_ROOT)) for folder in ('medical', 'remote_sensing')
                                          for p in (REPO_ROOT / 'configs' / folder).glob('*.py')))
def test_recipe_heads_and_band_counts_match_their_default_backbone(config):
    """The full-size recipes as shipped (ConvNeXt-T / ResNet-50): checked without building or downloading."""
    from visionattn.mm.config import check_band_counts, check_neck_channels, load_config
    cfg = load_config(str(REPO_ROOT / config))
    check_neck_channels(cfg)
    check_band_counts(cfg)
    assert cfg.custom_imports['imports'] == ['visionattn.mm']
