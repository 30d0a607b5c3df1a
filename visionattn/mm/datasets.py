"""The datasets the configs name: checked versions of the standard ones, and medical and remote-sensing
datasets in their public layouts, built on OpenMMLab's dataset classes.

Every class here has :class:`~visionattn.mm.validation.CheckedDataset` mixed in (a missing annotation
file or an empty split stops with where it looked; ``on_bad_sample`` skips damaged samples):
``ADE20KDataset``, ``CocoDataset`` and ``ImageNet`` are mmseg's, mmdet's and mmpretrain's with only that
(and, for ADE20K, the mask checks of the segmentation datasets below).

What OpenMMLab already has is reused: mmseg's ``BaseSegDataset``, ``LoveDADataset`` and
``PotsdamDataset``, mmdet's ``XMLDataset`` (VOC format), mmpretrain's ``CustomDataset`` and
``BaseDataset``. What is added, because none of them has it:

- layouts they cannot read as published: Kvasir-SEG and ISIC 2018 (no class in mmseg), LoveDA as
  unzipped (``Train/Urban/images_png``; mmseg wants a converted copy), ISIC 2018 Task 3 / HAM10000
  (one-hot CSV ground truth), DIOR (VOC XML in ``Annotations/Horizontal Bounding Boxes`` with
  mixed-case class names), EuroSAT and NWPU-RESISC45 (class folders, no official split);
- a deterministic, stratified split for datasets published without one (``split`` +
  ``split_fractions``), so train/val/test never overlap and stay the same from run to run;
- clear errors where the stock classes fail late or silently: an empty split, an image without its
  mask, class folders that do not match the class list (mmpretrain maps folders to labels by sorted
  name, not by the class list), object names not in the class list (mmdet's XMLDataset skips them).
  They raise :class:`~visionattn.errors.MissingFileError` (files or folders not found) or
  :class:`~visionattn.errors.DataError` (contents that cannot be used), which the programs print as one line.

Segmentation samples carry ``num_classes`` so that :class:`~visionattn.mm.transforms.LoadSegAnnotations`
can check that masks hold class indices.
"""
from __future__ import annotations

import csv
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Any, Mapping, Sequence

import numpy as np
from mmengine import fileio

import visionattn  # noqa: F401  (arms the mmcv op stand-in before mmseg/mmdet are imported)
from mmdet.datasets import CocoDataset as _MMDetCocoDataset
from mmdet.datasets import XMLDataset
from mmpretrain.datasets import BaseDataset as ClsBaseDataset
from mmpretrain.datasets import CustomDataset
from mmpretrain.datasets import ImageNet as _MMPretrainImageNet
from mmseg.datasets import ADE20KDataset as _MMSegADE20KDataset
from mmseg.datasets import BaseSegDataset
from mmseg.datasets import LoveDADataset as _MMSegLoveDADataset
from mmseg.datasets import PotsdamDataset as _MMSegPotsdamDataset

from visionattn.errors import ConfigError, DataError, MissingFileError, UnknownNameError
from visionattn.registry import DATASETS

from .validation import CheckedDataset

__all__ = ['split_members', 'ADE20KDataset', 'CocoDataset', 'ImageNet', 'SegFolderDataset', 'KvasirSEGDataset',
           'ISIC2018Task1Dataset', 'LoveDADataset', 'PotsdamDataset', 'DIORDataset', 'ClassFolderDataset',
           'EuroSATDataset', 'NWPURESISC45Dataset', 'ISIC2018Task3Dataset']

_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')


def split_members(names: Sequence[str], split: str, fractions: Mapping[str, float], seed: int = 0) -> list[int]:
    """Indices of ``names`` that fall into ``split`` under a seeded, deterministic partition.

    ``names`` are sorted, shuffled with ``seed`` and cut at the cumulative ``fractions`` (rounded), so the
    splits are disjoint, cover everything, and depend only on the set of names, not on listing order.
    """
    if split not in fractions:
        raise UnknownNameError(f'split {split!r} is not one of {sorted(fractions)}')
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6 or min(fractions.values()) < 0:
        raise ConfigError(f'split_fractions must be non-negative and sum to 1, got {dict(fractions)} (sum {total:g})')
    order = sorted(range(len(names)), key=lambda i: names[i])
    order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    bounds = np.round(np.cumsum([0.0, *fractions.values()]) * len(order)).astype(int)
    position = list(fractions).index(split)
    return sorted(order[bounds[position]:bounds[position + 1]])


def _empty_split_error(dataset: str, where: str, what: str, split: str | None = None) -> MissingFileError:
    split_note = f' (split {split!r})' if split else ''
    return MissingFileError(f'{dataset}{split_note}: no {what} found in {where}. Check data_root / data_prefix / '
                            'ann_file in the config (or --data-root), the file suffixes, and the split settings.')


class _CheckedSegMixin(CheckedDataset):
    """Checks shared by the segmentation datasets: non-empty split, a mask for every image (when skipping
    bad samples, an image without its mask is skipped when it is loaded), class count in every sample."""

    def _checked(self, data_list: list[dict], where: str) -> list[dict]:
        name = type(self).__name__
        if not data_list:
            raise _empty_split_error(name, where, f'images ending in {self.img_suffix!r}',
                                     getattr(self, 'split', None))
        missing = [] if self.on_bad_sample != 'raise' else [
            d['seg_map_path'] for d in data_list
            if 'seg_map_path' in d and not fileio.exists(d['seg_map_path'], backend_args=self.backend_args)]
        if missing:
            raise MissingFileError(
                f'{name}: {len(missing)} of {len(data_list)} images have no mask, e.g. {missing[:3]}. Each image '
                f'<name>{self.img_suffix} needs <name>{self.seg_map_suffix} in the mask folder; or run with '
                '--skip-bad-samples to leave out such images (each is logged and counted in the metrics JSON).')
        num_classes = len(self._metainfo['classes'])
        for info in data_list:
            info['num_classes'] = num_classes
        return data_list


@DATASETS.register_module()
class ADE20KDataset(_CheckedSegMixin, _MMSegADE20KDataset):
    """mmseg's ``ADE20KDataset`` (150 classes, mask value 0 ignored through ``reduce_zero_label``), checked:
    an empty split or an image without its mask stops when the dataset is built, and every sample carries
    ``num_classes`` for :class:`~visionattn.mm.transforms.LoadSegAnnotations`."""

    def load_data_list(self) -> list[dict]:
        return self._checked(super().load_data_list(), self.data_prefix.get('img_path', ''))


@DATASETS.register_module()
class CocoDataset(CheckedDataset, _MMDetCocoDataset):
    """mmdet's ``CocoDataset``, checked: a missing annotation file or an empty split stops when it is built."""


@DATASETS.register_module()
class ImageNet(CheckedDataset, _MMPretrainImageNet):
    """mmpretrain's ``ImageNet``, checked: a missing annotation file or an empty split stops when it is built."""


@DATASETS.register_module()
class SegFolderDataset(_CheckedSegMixin, BaseSegDataset):
    """Images and masks in two folders, paired by name; your own data or a published folder layout.

    ``data_prefix=dict(img_path=..., seg_map_path=...)`` and the suffixes pair ``images/x.jpg`` with
    ``masks/x<seg_map_suffix>``; ``metainfo=dict(classes=(...))`` names the classes (mask value i is class i).
    A split comes from ``ann_file`` (one image name without suffix per line, as in mmseg), from separate
    folders per split, or, for data published as one folder, from ``split`` + ``split_fractions``
    (e.g. ``dict(train=0.8, val=0.1, test=0.1)``) with ``split_seed``.
    """

    def __init__(self, split: str | None = None, split_fractions: Mapping[str, float] | None = None,
                 split_seed: int = 0, **kwargs: Any) -> None:
        if (split is None) != (split_fractions is None):
            raise ConfigError('split and split_fractions go together: give both (one folder cut into splits) '
                              'or neither')
        self.split, self.split_fractions, self.split_seed = split, split_fractions, split_seed
        super().__init__(**kwargs)

    def load_data_list(self) -> list[dict]:
        data_list = super().load_data_list()
        if self.split is not None:
            if self.ann_file:
                raise ConfigError('give either ann_file (a list of names) or split/split_fractions, not both')
            names = [osp.basename(d['img_path']) for d in data_list]
            data_list = [data_list[i] for i in split_members(names, self.split, self.split_fractions,
                                                             self.split_seed)]
        return self._checked(data_list, self.ann_file or self.data_prefix.get('img_path', ''))


@DATASETS.register_module()
class KvasirSEGDataset(SegFolderDataset):
    """Kvasir-SEG polyp segmentation (Jha et al. 2020), as unzipped: ``Kvasir-SEG/{images,masks}/<id>.jpg``.

    The masks are JPEG (0/255 with compression noise): load them with
    ``LoadSegAnnotations(binary_threshold=128)``. The release has no split: use ``ann_file`` with a
    published list (e.g. the authors' 880/120 split) or ``split`` + ``split_fractions``.
    """

    METAINFO = dict(classes=('background', 'polyp'), palette=[[0, 0, 0], [255, 64, 64]])

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '.jpg', **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)


@DATASETS.register_module()
class ISIC2018Task1Dataset(SegFolderDataset):
    """ISIC 2018 Task 1 lesion boundary segmentation, in the challenge's folders.

    Images ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/ISIC_<id>.jpg``, masks
    ``ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/ISIC_<id>_segmentation.png`` (0/255: load with
    ``LoadSegAnnotations(binary_threshold=128)``). 2594 / 100 / 1000 images.
    """

    METAINFO = dict(classes=('background', 'lesion'), palette=[[0, 0, 0], [255, 160, 0]])

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '_segmentation.png', **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)


@DATASETS.register_module()
class LoveDADataset(_CheckedSegMixin, _MMSegLoveDADataset):
    """LoveDA (Wang et al. 2021) as unzipped, without mmseg's conversion step; domains selectable.

    Reads ``<img_path>/<domain>/images_png/<id>.png`` and ``<seg_map_path>/<domain>/masks_png/<id>.png``
    for each of ``domains`` (``Urban``, ``Rural``: select one for LoveDA's domain-adaptation setting),
    e.g. ``data_prefix=dict(img_path='Train', seg_map_path='Train')``. Mask value 0 is no-data (ignored
    through ``reduce_zero_label=True``); 1..7 are the seven classes. ``Test`` has no masks: leave out
    ``seg_map_path``.
    """

    def __init__(self, domains: Sequence[str] = ('Urban', 'Rural'), **kwargs: Any) -> None:
        unknown = set(domains) - {'Urban', 'Rural'}
        if unknown or not domains:
            raise ConfigError(f"LoveDA domains are 'Urban' and 'Rural', got {list(domains)}")
        self.domains = tuple(domains)
        super().__init__(**kwargs)

    def load_data_list(self) -> list[dict]:
        img_root = self.data_prefix.get('img_path', '')
        ann_root = self.data_prefix.get('seg_map_path')
        data_list = []
        for domain in self.domains:
            img_dir = osp.join(img_root, domain, 'images_png')
            if not fileio.isdir(img_dir, backend_args=self.backend_args):
                raise MissingFileError(f'LoveDADataset: {img_dir} does not exist; data_prefix must point at an '
                                       'unzipped split folder (Train, Val or Test) holding Urban/ and Rural/')
            for name in sorted(fileio.list_dir_or_file(img_dir, list_dir=False, suffix=self.img_suffix,
                                                       backend_args=self.backend_args)):
                info = dict(img_path=osp.join(img_dir, name), label_map=self.label_map,
                            reduce_zero_label=self.reduce_zero_label, seg_fields=[], domain=domain)
                if ann_root is not None:
                    info['seg_map_path'] = osp.join(ann_root, domain, 'masks_png',
                                                    name[:-len(self.img_suffix)] + self.seg_map_suffix)
                data_list.append(info)
        return self._checked(data_list, f'{img_root}/{{{",".join(self.domains)}}}/images_png')


@DATASETS.register_module()
class PotsdamDataset(_CheckedSegMixin, _MMSegPotsdamDataset):
    """ISPRS Potsdam in mmseg's converted layout (``img_dir/{train,val}``, ``ann_dir/{train,val}``, 512x512).

    The ISPRS tiles (6000x6000 ``2_Ortho_RGB`` with colour-coded ``5_Labels_all_noBoundary``) are cut and
    colour-mapped by mmseg's converter (``tools/dataset_converters/potsdam.py``, shipped in the mmseg
    package under ``.mim``); value 0 (boundary) is ignored through ``reduce_zero_label=True``.
    """

    def load_data_list(self) -> list[dict]:
        return self._checked(super().load_data_list(), self.data_prefix.get('img_path', ''))


@DATASETS.register_module()
class DIORDataset(CheckedDataset, XMLDataset):
    """DIOR object detection (Li et al. 2020), horizontal boxes, in the published layout.

    ``ImageSets/Main/{train,val,test}.txt`` list image ids; images are in ``JPEGImages-trainval`` or
    ``JPEGImages-test`` (``img_subdir``), VOC XML in ``Annotations/Horizontal Bounding Boxes``
    (``ann_subdir``). Object names are matched case-insensitively (the XML spells
    ``Expressway-Service-area``); a name that is not a DIOR class is an error, and a DIOR class left out
    of ``metainfo['classes']`` is skipped (a class subset).
    """

    METAINFO = dict(classes=('airplane', 'airport', 'baseballfield', 'basketballcourt', 'bridge', 'chimney', 'dam',
                             'Expressway-Service-area', 'Expressway-toll-station', 'golffield', 'groundtrackfield',
                             'harbor', 'overpass', 'ship', 'stadium', 'storagetank', 'tenniscourt', 'trainstation',
                             'vehicle', 'windmill'))

    def __init__(self, img_subdir: str = 'JPEGImages-trainval', ann_subdir: str = 'Annotations/Horizontal Bounding Boxes',
                 **kwargs: Any) -> None:
        super().__init__(img_subdir=img_subdir, ann_subdir=ann_subdir, **kwargs)

    def load_data_list(self) -> list[dict]:
        self._canonical_names = {n.lower(): n for n in self.METAINFO['classes']}
        self._canonical_names.update({n.lower(): n for n in self._metainfo['classes']})
        data_list = super().load_data_list()
        if not data_list:
            raise _empty_split_error('DIORDataset', self.ann_file, 'image ids')
        return data_list

    def parse_data_info(self, img_info: dict) -> dict:
        xml_path = img_info['xml_path']
        if not fileio.exists(xml_path, backend_args=self.backend_args):
            raise MissingFileError(f'DIORDataset: {xml_path}, the annotation of image {img_info["img_id"]} listed in '
                                   f'{self.ann_file}, does not exist. Check ann_subdir and that Annotations.zip is '
                                   'completely unzipped, or remove the id from the list.')
        try:
            return super().parse_data_info(img_info)
        except ET.ParseError as err:
            raise DataError(f'DIORDataset: {xml_path} is not valid XML ({err}): re-copy it from the dataset, or remove '
                            f'image {img_info["img_id"]} from {self.ann_file}.') from err

    def _parse_instance_info(self, raw_ann_info: Any, minus_one: bool = True) -> list[dict]:
        for obj in raw_ann_info.findall('object'):
            name = obj.find('name')
            canonical = self._canonical_names.get((name.text or '').strip().lower())
            if canonical is None:
                raise DataError(f'DIORDataset: object name {name.text!r} in {raw_ann_info.findtext("filename")} is '
                                f'not a DIOR class; known: {list(self.METAINFO["classes"])}')
            name.text = canonical
        return super()._parse_instance_info(raw_ann_info, minus_one=minus_one)


@DATASETS.register_module()
class ClassFolderDataset(CheckedDataset, CustomDataset):
    """Images in one folder per class (``<data_prefix>/<class>/<image>``), with an optional seeded split.

    Labels follow ``metainfo['classes']`` by name (without it, the sorted folder names). Every folder must
    be a listed class and every class must have images. Data published as one folder is cut per class with
    ``split`` + ``split_fractions`` (stratified, deterministic for a ``split_seed``); data already in split
    folders needs neither; ``ann_file`` ("<path> <label>" per line) works as in mmpretrain.
    """

    def __init__(self, data_root: str = '', data_prefix: str | dict = '', split: str | None = None,
                 split_fractions: Mapping[str, float] | None = None, split_seed: int = 0,
                 extensions: Sequence[str] = _IMAGE_EXTENSIONS, **kwargs: Any) -> None:
        if (split is None) != (split_fractions is None):
            raise ConfigError('split and split_fractions go together: give both (one folder cut into splits) '
                              'or neither')
        self.split, self.split_fractions, self.split_seed = split, split_fractions, split_seed
        super().__init__(data_root=data_root, data_prefix=data_prefix, extensions=extensions, **kwargs)

    def load_data_list(self) -> list[dict]:
        if self.ann_file:
            if self.split is not None:
                raise ConfigError('give either ann_file or split/split_fractions, not both')
            return super().load_data_list()
        root = self.img_prefix
        if not fileio.isdir(root):
            raise MissingFileError(f'{type(self).__name__}: image folder {root} does not exist')
        folders = sorted(fileio.list_dir_or_file(root, list_file=False))
        classes = list(self._metainfo.get('classes') or folders)
        unknown = sorted(set(folders) - set(classes))
        missing = sorted(set(classes) - set(folders))
        if unknown or missing:
            raise DataError(f'{type(self).__name__}: the class folders in {root} do not match the classes: '
                             f'folders that are not classes {unknown}, classes without a folder {missing}. '
                             "Rename the folders or set metainfo=dict(classes=...) to the folder names.")
        self._metainfo['classes'] = tuple(classes)
        data_list = []
        for label, name in enumerate(classes):
            files = sorted(f for f in fileio.list_dir_or_file(osp.join(root, name), list_dir=False, recursive=True)
                           if self.is_valid_file(f))
            if not files:
                raise _empty_split_error(type(self).__name__, osp.join(root, name),
                                         f'images with extensions {sorted(self.extensions)}')
            if self.split is not None:
                files = [files[i] for i in split_members(files, self.split, self.split_fractions, self.split_seed)]
            data_list += [dict(img_path=osp.join(root, name, f), gt_label=label) for f in files]
        if not data_list:
            raise _empty_split_error(type(self).__name__, root, 'images', self.split)
        return data_list


@DATASETS.register_module()
class EuroSATDataset(ClassFolderDataset):
    """EuroSAT (Helber et al. 2019): 27,000 Sentinel-2 64x64 patches in 10 land-cover class folders.

    RGB: ``2750/<Class>/<Class>_<n>.jpg`` (``EuroSAT.zip``; the Zenodo copy unzips to ``EuroSAT_RGB``).
    Multispectral: 13-band uint16 GeoTIFFs ``<Class>/<Class>_<n>.tif`` (``EuroSATallBands.zip``:
    ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif``), bands B01-B08, B09, B10, B11, B12, B8A;
    read them with :class:`~visionattn.mm.transforms.LoadMultiBandImage` and ``extensions=('.tif',)``.
    No official split: use ``split`` + ``split_fractions``.
    """

    METAINFO = dict(classes=('AnnualCrop', 'Forest', 'HerbaceousVegetation', 'Highway', 'Industrial', 'Pasture',
                             'PermanentCrop', 'Residential', 'River', 'SeaLake'))


@DATASETS.register_module()
class NWPURESISC45Dataset(ClassFolderDataset):
    """NWPU-RESISC45 scene classification (Cheng et al. 2017): 45 class folders of 700 256x256 JPEGs.

    Layout ``NWPU-RESISC45/<class>/<class>_<nnn>.jpg``. The benchmark trains on 10% or 20% per class and
    tests on the rest: use ``split`` + ``split_fractions``.
    """

    METAINFO = dict(classes=(
        'airplane', 'airport', 'baseball_diamond', 'basketball_court', 'beach', 'bridge', 'chaparral', 'church',
        'circular_farmland', 'cloud', 'commercial_area', 'dense_residential', 'desert', 'forest', 'freeway',
        'golf_course', 'ground_track_field', 'harbor', 'industrial_area', 'intersection', 'island', 'lake', 'meadow',
        'medium_residential', 'mobile_home_park', 'mountain', 'overpass', 'palace', 'parking_lot', 'railway',
        'railway_station', 'rectangular_farmland', 'river', 'roundabout', 'runway', 'sea_ice', 'ship', 'snowberg',
        'sparse_residential', 'stadium', 'storage_tank', 'tennis_court', 'terrace', 'thermal_power_station',
        'wetland'))


@DATASETS.register_module()
class ISIC2018Task3Dataset(CheckedDataset, ClsBaseDataset):
    """ISIC 2018 Task 3 / HAM10000 skin-lesion diagnosis (7 classes), with the challenge's official splits.

    ``ann_file`` is a ground-truth CSV (``ISIC2018_Task3_<Split>_GroundTruth.csv``: ``image`` then one
    one-hot column per class); ``data_prefix`` the image folder (``ISIC2018_Task3_<Split>_Input``). The
    training split is HAM10000 (10,015 images: NV 6705, MEL 1113, BKL 1099, BCC 514, AKIEC 327, VASC 142,
    DF 115); validation 193, test 1512 images. The challenge ranks by balanced accuracy (mean recall).
    """

    METAINFO = dict(classes=('MEL', 'NV', 'BCC', 'AKIEC', 'BKL', 'DF', 'VASC'))

    def load_data_list(self) -> list[dict]:
        classes = list(self._metainfo['classes'])
        with fileio.get_local_path(self.ann_file) as local:
            with open(local, newline='') as f:
                rows = list(csv.DictReader(f))
        if not rows:
            raise _empty_split_error(type(self).__name__, self.ann_file, 'rows')
        missing = [c for c in ['image', *classes] if c not in rows[0]]
        if missing:
            raise DataError(f'{self.ann_file}: columns {missing} are missing; an ISIC 2018 Task 3 ground-truth CSV '
                             f'has image,{",".join(classes)}')
        data_list = []
        for row in rows:
            hot = [c for c in classes if float(row[c]) >= 0.5]
            if len(hot) != 1:
                raise DataError(f'{self.ann_file}: image {row["image"]} has {len(hot)} positive classes {hot}; '
                                 'each row must have exactly one')
            data_list.append(dict(img_path=osp.join(self.img_prefix, row['image'] + '.jpg'),
                                  gt_label=classes.index(hot[0])))
        absent = [] if self.on_bad_sample != 'raise' else [d['img_path'] for d in data_list
                                                              if not fileio.exists(d['img_path'])]
        if absent:
            raise MissingFileError(f'{type(self).__name__}: {len(absent)} images listed in {self.ann_file} are missing, '
                                   f'e.g. {absent[:3]}; or run with --skip-bad-samples to leave them out (each is '
                                   'logged and counted in the metrics JSON).')
        return data_list
