"""One data-validation layer for every dataset the configs name: bad files stop with the file, what is
wrong and what to do, in training and evaluation alike; or, asked for, are left out, logged and counted.

None of mmengine, mmcv, mmseg, mmdet or mmpretrain does this. Their loaders fail with a bare
``AssertionError: failed to load image`` or an OpenCV assertion, an empty split surfaces as numpy's
``need at least one array to concatenate``, and the only way to pass over a bad file
(``ignore_empty``, a transform returning ``None``) silently trains on a random other sample instead,
even in a validation set. Here:

- :func:`read_file`, :func:`decode_image` and :func:`check_image_size` are what the project's loading
  transforms (:mod:`visionattn.mm.transforms`) do with every image and mask file: a missing file raises
  :class:`~visionattn.errors.MissingFileError`; an empty, truncated or undecodable file, or an image of
  a degenerate aspect ratio, raises :class:`~visionattn.errors.DataError`.
- :class:`CheckedDataset` is mixed into every dataset class of the project (and into subclasses of the
  standard ADE20K, COCO and ImageNet datasets): a missing annotation file and an empty split (or one that
  ``filter_cfg`` empties) stop when the dataset is built, naming where it looked.
- With ``on_bad_sample`` (set for all loaders by :func:`enable_bad_sample_skipping`, the programs'
  ``--skip-bad-samples``) a sample whose files raise one of those errors is replaced by another random
  sample in training and left out in evaluation. The error messages travel with the batch
  (:func:`collate_skipping_bad_samples`) to :class:`~visionattn.mm.hooks.SkippedSamplesHook`, which logs
  each and counts them into the metrics JSON; :class:`SkippingValLoop` / :class:`SkippingTestLoop` pass
  over evaluation batches of which nothing is left.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterator, Sequence

import mmcv
import numpy as np
from mmengine import fileio
from mmengine.config import Config
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.runner import TestLoop, ValLoop

from visionattn.errors import ConfigError, DataError, MissingFileError
from visionattn.registry import FUNCTIONS, LOOPS

__all__ = ['SKIPPED_KEY', 'SKIP_HINT', 'FIX_OR_SKIP', 'read_file', 'decode_image', 'check_image_size',
           'CheckedDataset', 'collate_skipping_bad_samples', 'SkippingValLoop', 'SkippingTestLoop',
           'enable_bad_sample_skipping']

#: Key under which a sample (and a batch) carries the messages of the bad samples skipped in its place.
SKIPPED_KEY = 'skipped_bad_samples'

#: How to go on without fixing a bad file; ends every message about one.
SKIP_HINT = ('To leave out such files instead (each is logged and counted in the metrics JSON), run with '
             '--skip-bad-samples.')
#: What to do about a damaged or missing file.
FIX_OR_SKIP = ('Copy the file again from the dataset source (it may be a partial download or extraction) or remove '
               f'it from the split. {SKIP_HINT}')


def read_file(path: str, backend_args: dict | None = None) -> bytes:
    """The bytes of an image or mask file; a missing or empty file is a user error naming it."""
    try:
        data = fileio.get(path, backend_args=backend_args)
    except FileNotFoundError:
        raise MissingFileError(f'{path} does not exist, but the dataset lists it. Check data_root / data_prefix / '
                               f'ann_file in the config (or --data-root), the file suffixes, and that the dataset is '
                               f'completely unpacked. {SKIP_HINT}') from None
    if not data:
        raise DataError(f'{path} is empty (0 bytes). {FIX_OR_SKIP}')
    return data


def decode_image(data: bytes, path: str, decode: Callable[[bytes], np.ndarray | None] | None = None,
                 flag: str = 'unchanged', backend: str | None = None) -> np.ndarray:
    """Pixels of an image file's bytes (``decode``, by default mmcv's ``imfrombytes(data, flag, backend)``).

    A decoder that fails or returns nothing (OpenCV returns ``None`` for truncated JPEG and PNG data) means
    the file is damaged or not an image: a :class:`DataError` naming it.
    """
    try:
        array = decode(data) if decode is not None else mmcv.imfrombytes(data, flag=flag, backend=backend)
    except DataError:
        raise
    except Exception as err:  # each decoder has its own exceptions for bad bytes
        raise DataError(f'{path} cannot be decoded as an image ({type(err).__name__}: {err}): it is truncated, '
                        f'damaged or not an image file. {FIX_OR_SKIP}') from err
    if array is None or array.size == 0:
        raise DataError(f'{path} cannot be decoded as an image ({len(data)} bytes): it is truncated, damaged or not '
                        f'an image file. {FIX_OR_SKIP}')
    return array


def check_image_size(shape: Sequence[int], path: str, max_aspect_ratio: float | None,
                     transform: str = 'visionattn.LoadImageFromFile') -> None:
    """Refuse an image whose sides differ by more than ``max_aspect_ratio`` (e.g. 1000x2 pixels).

    Such a strip breaks the pipelines: resizing it to a few hundred pixels rounds its short side to 0, and
    OpenCV fails far from the file's name.
    """
    height, width = int(shape[0]), int(shape[1])
    if max_aspect_ratio is None:
        return
    ratio = max(height, width) / max(min(height, width), 1)
    if ratio > max_aspect_ratio:
        raise DataError(f'{path} is {height}x{width} pixels (HxW): its aspect ratio {ratio:g}:1 exceeds '
                        f'max_aspect_ratio={max_aspect_ratio:g} of {transform}, so resizing it would leave a side '
                        f'of (almost) no pixels. If such images are intended, raise max_aspect_ratio in the '
                        f'pipeline (None turns the check off). {SKIP_HINT}')


_BAD_SAMPLE_ERRORS = (DataError, MissingFileError)
_ON_BAD_SAMPLE = ('raise', 'replace', 'drop')


class CheckedDataset:
    """Mixed into a dataset class (first in the bases): checks the split when it is built, and skips bad samples.

    Args:
        on_bad_sample: what a sample whose files raise :class:`DataError` / :class:`MissingFileError` does:
            ``'raise'`` (default) stops; ``'replace'`` (training) loads a random other sample in its place;
            ``'drop'`` (evaluation) returns only the skipped messages, which
            :func:`collate_skipping_bad_samples` takes out of the batch. Either way the messages travel with
            the batch under :data:`SKIPPED_KEY`, for :class:`~visionattn.mm.hooks.SkippedSamplesHook`.
    """

    def __init__(self, *args: Any, on_bad_sample: str = 'raise', **kwargs: Any) -> None:
        if on_bad_sample not in _ON_BAD_SAMPLE:
            raise ConfigError(f'on_bad_sample must be one of {_ON_BAD_SAMPLE}, got {on_bad_sample!r}')
        self.on_bad_sample = on_bad_sample
        super().__init__(*args, **kwargs)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        name = type(self).__name__
        ann_file = getattr(self, 'ann_file', None)
        if ann_file and not fileio.exists(ann_file, backend_args=getattr(self, 'backend_args', None)):
            raise MissingFileError(f'{name}: annotation file {ann_file} does not exist. Check data_root and ann_file '
                                   'in the config (or --data-root); the dataset\'s docs say where the file comes from.')
        try:
            super().full_init()
        except FileNotFoundError as err:  # a listing or annotation file the stock classes read without checking
            if isinstance(err, MissingFileError):
                raise
            raise MissingFileError(f'{name}: {err}. Check data_root / data_prefix / ann_file in the config (or '
                                   '--data-root) and that the dataset is complete.') from err

    def filter_data(self) -> list[dict]:
        found = len(self.data_list)
        data_list = super().filter_data()
        if not data_list:
            name = type(self).__name__
            where = getattr(self, 'ann_file', None) or getattr(self, 'data_prefix', None) or getattr(self, 'data_root', '')
            if found:
                raise DataError(f'{name}: filter_cfg={self.filter_cfg} leaves none of the {found} samples found in '
                                f'{where}. Loosen filter_cfg (e.g. filter_empty_gt=False, a smaller min_size).')
            raise MissingFileError(f'{name}: the split is empty: no samples found in {where} (data_root '
                                   f'{getattr(self, "data_root", None)!r}). Check data_root / data_prefix / ann_file in '
                                   'the config (or --data-root) and the file suffixes.')
        return data_list

    def __getitem__(self, idx: int) -> dict:
        if self.on_bad_sample == 'raise':
            return super().__getitem__(idx)
        skipped: list[str] = []
        for _ in range(self.max_refetch + 1):
            try:
                data = super().__getitem__(idx)
            except _BAD_SAMPLE_ERRORS as err:
                skipped.append(str(err).removesuffix(SKIP_HINT).rstrip())
                if self.on_bad_sample == 'drop':
                    return {SKIPPED_KEY: skipped}
                idx = self._rand_another()
                continue
            if skipped:
                data[SKIPPED_KEY] = skipped
            return data
        raise DataError(f'{type(self).__name__}: {len(skipped)} samples in a row could not be loaded, so most of the '
                        f'split must be damaged (the last: {skipped[-1]}). Check the dataset before training on it.')


@FUNCTIONS.register_module()
def collate_skipping_bad_samples(data_batch: Sequence[dict], collate: dict | Callable | None = None) -> dict:
    """Collate the samples of a batch that loaded (with the loader's own ``collate``: a config as the Runner
    takes it, or a function; default mmengine's ``pseudo_collate``) and gather the messages of the skipped
    ones under :data:`SKIPPED_KEY`. A batch of which every sample was dropped is ``{SKIPPED_KEY: [...]}``.
    """
    if callable(collate):
        collate_fn = collate
    else:
        collate_cfg = dict(collate or dict(type='pseudo_collate'))
        collate_type = collate_cfg.pop('type')
        collate_fn = partial(MMENGINE_FUNCTIONS.get(collate_type) if isinstance(collate_type, str) else collate_type,
                             **collate_cfg)
    skipped = [message for sample in data_batch for message in sample.pop(SKIPPED_KEY, ())]
    kept = [sample for sample in data_batch if sample]
    batch = collate_fn(kept) if kept else {}
    if skipped:
        batch[SKIPPED_KEY] = skipped
    return batch


def _nothing_left(data_batch: Any) -> bool:
    return isinstance(data_batch, dict) and not set(data_batch) - {SKIPPED_KEY}


@LOOPS.register_module()
class SkippingValLoop(ValLoop):
    """mmengine's ValLoop that passes over a batch of which every sample was skipped as bad (the
    ``before_val_iter`` hooks still see it, so the skipped files are logged and counted)."""

    def run_iter(self, idx: int, data_batch: dict) -> None:
        if _nothing_left(data_batch):
            self.runner.call_hook('before_val_iter', batch_idx=idx, data_batch=data_batch)
            return
        super().run_iter(idx, data_batch)


@LOOPS.register_module()
class SkippingTestLoop(TestLoop):
    """mmengine's TestLoop that passes over a batch of which every sample was skipped as bad."""

    def run_iter(self, idx: int, data_batch: dict) -> None:
        if _nothing_left(data_batch):
            self.runner.call_hook('before_test_iter', batch_idx=idx, data_batch=data_batch)
            return
        super().run_iter(idx, data_batch)


def _dataset_cfgs(node: Any) -> Iterator[dict]:
    """The dataset configs of a dataloader's ``dataset``, through wrappers (``dataset`` / ``datasets``)."""
    if not isinstance(node, dict):
        return
    inner = [node['dataset']] if isinstance(node.get('dataset'), dict) else list(node.get('datasets') or [])
    if inner:
        for child in inner:
            yield from _dataset_cfgs(child)
    else:
        yield node


def _dataset_class(type_name: Any) -> type | None:
    if not isinstance(type_name, str):
        return type_name if isinstance(type_name, type) else None
    with MMENGINE_DATASETS.switch_scope_and_registry(None) as registry:  # the config's default scope
        return registry.get(type_name)


_SKIPPING_LOOPS = {'val_cfg': ('ValLoop', 'visionattn.SkippingValLoop'),
                   'test_cfg': ('TestLoop', 'visionattn.SkippingTestLoop')}


def enable_bad_sample_skipping(cfg: Config, loaders: Sequence[str]) -> None:
    """Have the runs of ``cfg`` leave out bad samples (``--skip-bad-samples``) instead of stopping at the first.

    Every dataset of ``loaders`` skips with :class:`CheckedDataset`'s ``on_bad_sample`` (``'replace'`` for
    ``train_dataloader``, ``'drop'`` for the others), each loader's collate function is wrapped by
    :func:`collate_skipping_bad_samples`, evaluation runs in :class:`SkippingValLoop` /
    :class:`SkippingTestLoop`, and :class:`~visionattn.mm.hooks.SkippedSamplesHook` logs and counts.
    """
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for dataset in _dataset_cfgs(loader_cfg.get('dataset')):
            cls = _dataset_class(dataset.get('type'))
            if cls is None or not issubclass(cls, CheckedDataset):
                raise ConfigError(f'--skip-bad-samples: {loader} uses the dataset {dataset.get("type")!r}, which cannot '
                                  'skip samples; use one of the project\'s datasets (visionattn.ADE20KDataset, '
                                  'visionattn.CocoDataset, visionattn.ImageNet, visionattn.SegFolderDataset, ...), '
                                  'as the configs under configs/_base_/datasets do.')
            dataset['on_bad_sample'] = 'replace' if loader == 'train_dataloader' else 'drop'
        collate = loader_cfg.get('collate_fn') or dict(type='pseudo_collate')
        if not (isinstance(collate, dict) and collate.get('type') == 'visionattn.collate_skipping_bad_samples'):
            loader_cfg['collate_fn'] = dict(type='visionattn.collate_skipping_bad_samples', collate=collate)
    for key, (stock, skipping) in _SKIPPING_LOOPS.items():
        loop = cfg.get(key)
        if loop is None:
            continue
        if loop.get('type', stock) not in (stock, skipping):
            raise ConfigError(f'--skip-bad-samples: {key}.type {loop.get("type")!r} is not mmengine\'s {stock}, which '
                              f'{skipping} extends; remove --skip-bad-samples or use {stock}.')
        loop['type'] = skipping
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'visionattn.SkippedSamplesHook' for h in hooks):
        hooks.append(dict(type='visionattn.SkippedSamplesHook'))
    cfg.custom_hooks = hooks
