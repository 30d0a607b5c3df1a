"""Loading an OpenMMLab config and checking it before a run (what the train and test programs share).

mmengine reports most config mistakes late and obscurely (a typo in ``--cfg-options`` silently adds an
unused key; a missing dataset surfaces as an empty-dataset error deep in a dataloader worker; neck
channels that do not match a swapped backbone fail inside a convolution). The checks here run before
anything is built and say what to do.
"""
from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path
from typing import Any, Iterator

from mmengine.config import Config, ConfigDict
from mmengine.registry import (DATASETS, EVALUATOR, HOOKS, LOOPS, METRICS, MODELS, OPTIM_WRAPPERS, OPTIMIZERS,
                               PARAM_SCHEDULERS, TRANSFORMS, VISUALIZERS, init_default_scope)

import visionattn.mm  # noqa: F401  (registers the visionattn scope; arms the mmcv stand-in)
from visionattn.errors import ConfigError, MissingFileError

__all__ = ['load_config', 'build_runner', 'enable_prediction_pictures', 'check_data_roots', 'check_neck_channels',
           'check_band_counts', 'ConfigError', 'DATASET_SOURCES']


# Where each standard dataset comes from (also under the stock name without 'visionattn.'); the demo stand-ins
# are made by tools/make_demo_data.py.
DATASET_SOURCES = {
    'visionattn.ADE20KDataset': ('ADE20K (SceneParsing, ADEChallengeData2016)',
                                 'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip', 'ade20k'),
    'visionattn.CocoDataset': ('COCO 2017', 'https://cocodataset.org/#download (train2017, val2017, annotations)',
                               'coco'),
    'visionattn.ImageNet': ('ImageNet-1k (ILSVRC2012)', 'https://image-net.org/download.php, laid out as described in '
                            "mmpretrain's ImageNet dataset docs (train/<wnid>/*, val/*, meta/{train,val}.txt)", 'imagenet'),
    'visionattn.KvasirSEGDataset': ('Kvasir-SEG', 'https://datasets.simula.no/kvasir-seg/ (kvasir-seg.zip, unzipped)',
                                    'kvasir_seg'),
    'visionattn.ISIC2018Task1Dataset': ('ISIC 2018 Task 1 (lesion segmentation)', 'https://challenge.isic-archive.com/'
                                        'data/#2018 (Task 1-2 Input and Task 1 GroundTruth zips of each split, '
                                        'unzipped side by side)', 'isic2018_task1'),
    'visionattn.ISIC2018Task3Dataset': ('ISIC 2018 Task 3 / HAM10000', 'https://challenge.isic-archive.com/data/#2018 '
                                        '(Task 3 Input and GroundTruth zips of each split, unzipped side by side)',
                                        'isic2018_task3'),
    'visionattn.LoveDADataset': ('LoveDA', 'https://zenodo.org/records/5706578 (Train.zip, Val.zip, unzipped)',
                                 'loveda'),
    'visionattn.PotsdamDataset': ('ISPRS Potsdam, cut into 512x512 patches', 'https://www.isprs.org/education/'
                                  'benchmarks/UrbanSemLab/2d-sem-label-potsdam.aspx (2_Ortho_RGB.zip, '
                                  "5_Labels_all_noBoundary.zip), converted with mmseg's "
                                  'tools/dataset_converters/potsdam.py (in site-packages/mmseg/.mim)', 'potsdam'),
    'visionattn.DIORDataset': ('DIOR', 'https://drive.google.com/drive/folders/1UdlgHk49iu6WpcJ5467iT-UqNPpx__CC '
                               '(the authors\' folder: JPEGImages-trainval/-test, Annotations, ImageSets)', 'dior'),
    'visionattn.EuroSATDataset': ('EuroSAT (RGB: EuroSAT.zip; 13-band GeoTIFF: EuroSATallBands.zip)',
                                  'https://github.com/phelber/EuroSAT', 'eurosat eurosat_ms'),
    'visionattn.NWPURESISC45Dataset': ('NWPU-RESISC45', 'https://gcheng-nwpu.github.io/#Datasets', 'nwpu_resisc45'),
}

_REGISTRIES = (MODELS, DATASETS, TRANSFORMS, METRICS, EVALUATOR, HOOKS, LOOPS, OPTIM_WRAPPERS, OPTIMIZERS,
               PARAM_SCHEDULERS, VISUALIZERS)


def _lookup_type(type_name: Any) -> type | None:
    """The class a config ``type`` names, searched through mmengine's registries in the default scope."""
    if not isinstance(type_name, str):
        return type_name if inspect.isclass(type_name) else None
    for registry in _REGISTRIES:
        with registry.switch_scope_and_registry(None) as scoped:  # the default scope's registry
            try:
                cls = scoped.get(type_name)
            except (KeyError, ImportError):
                continue
        if cls is not None:
            return cls
    return None


def _constructor_arguments(cls: type) -> tuple[set[str], bool]:
    """Keyword names ``cls(...)`` takes, following ``**kwargs`` up the MRO; and whether any are open-ended."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(vars(klass)['__init__']).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != 'self'}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return names, False
    return names, True  # **kwargs all the way up: any name may be accepted


def _check_option_key(cfg: Config, full_key: str) -> None:
    node: Any = cfg._cfg_dict
    parts = full_key.split('.')
    for depth, part in enumerate(parts):
        is_leaf = depth == len(parts) - 1
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--cfg-options key '{full_key}': '{'.'.join(parts[:depth])}' is a list of "
                                  f'{len(node)} items, so the next part must be an index 0..{len(node) - 1}, '
                                  f'not {part!r}')
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--cfg-options key '{full_key}': '{'.'.join(parts[:depth])}' is a "
                              f'{type(node).__name__}, not a dict, so it has no key {part!r}')
        if part in node:
            node = node[part]
            continue
        where = '.'.join(parts[:depth]) or 'the top level'
        if is_leaf and 'type' in node:
            cls = _lookup_type(node['type'])
            if cls is None:
                return
            accepted, open_ended = _constructor_arguments(cls)
            if part in accepted or open_ended:
                return
            raise ConfigError(f"--cfg-options key '{full_key}': {cls.__name__} (at {where}) takes no argument "
                              f'{part!r}. {_suggest(part, sorted(accepted))}')
        raise ConfigError(f"--cfg-options key '{full_key}': {where} has no key {part!r}. "
                          f'{_suggest(part, list(node))}')


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3)
    return f'Did you mean {close}?' if close else f'Known keys: {sorted(choices)}'


def _replace_prefix(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return type(node)({k: _replace_prefix(v, old, new) for k, v in node.items()})
    if isinstance(node, (list, tuple)):
        return type(node)(_replace_prefix(v, old, new) for v in node)
    if isinstance(node, str) and node.startswith(old):
        return new + node[len(old):]
    return node


def load_config(path: str, cfg_options: dict[str, Any] | None = None, work_dir: str | None = None,
                data_root: str | None = None) -> Config:
    """Read a config, apply (checked) ``--cfg-options`` and an optional dataset root, set ``work_dir``.

    ``data_root`` replaces the config's top-level ``data_root`` wherever it prefixes a path (dataloaders
    and evaluators' annotation files alike), e.g. to run a config on the demo stand-in.
    """
    if not Path(path).is_file():
        raise MissingFileError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    if cfg.get('default_scope'):
        init_default_scope(cfg.default_scope)
    if cfg_options:
        for key in cfg_options:
            _check_option_key(cfg, key)
        cfg.merge_from_dict(cfg_options)
    if data_root is not None:
        old = cfg.get('data_root')
        if not old:
            raise ConfigError(f'--data-root needs a top-level data_root in {path} to replace')
        old, new = str(old).rstrip('/'), str(data_root).rstrip('/')
        cfg = Config(_replace_prefix(cfg.to_dict(), old, new), filename=cfg.filename)
        cfg.data_root = new
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('work_dirs', Path(path).stem)
    return cfg


def _datasets(loader_cfg: dict) -> Iterator[dict]:
    dataset = loader_cfg.get('dataset', {})
    if dataset.get('type') in ('ConcatDataset',):
        yield from dataset.get('datasets', [])
    elif 'dataset' in dataset:  # wrappers such as RepeatDataset / ClassBalancedDataset
        yield dataset['dataset']
    else:
        yield dataset


def _dataset_paths(dataset: dict) -> list[str]:
    root = dataset.get('data_root') or ''
    paths = [root] if root else []
    prefix = dataset.get('data_prefix')
    prefixes = prefix.values() if isinstance(prefix, dict) else [prefix] if prefix else []
    if dataset.get('type') in ('ImageNet', 'visionattn.ImageNet') and not prefixes and dataset.get('split'):
        prefixes = [dataset['split']]
    for value in [*prefixes, dataset.get('ann_file')]:
        if value:
            paths.append(value if os.path.isabs(value) else os.path.join(root, value))
    return paths


def check_data_roots(cfg: Config, loaders: tuple[str, ...]) -> None:
    """Stop with a helpful message when a dataset folder or annotation file of ``loaders`` is missing."""
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for dataset in _datasets(loader_cfg):
            missing = [p for p in _dataset_paths(dataset) if not os.path.exists(p)]
            if not missing:
                continue
            name, url, demo = DATASET_SOURCES.get(dataset.get('type')) or DATASET_SOURCES.get(
                f"visionattn.{dataset.get('type')}", (dataset.get('type'), None, None))
            lines = [f'{loader}: dataset path {missing[0]} does not exist.',
                     f'This config expects {name} under data_root={dataset.get("data_root")!r}.']
            if url:
                lines.append(f'Get the dataset from {url} and put (or symlink) it there,')
            if demo:
                lines.append('or make the small synthetic stand-in and point the config at it:\n'
                             f'  python tools/make_demo_data.py --out data/demo --tasks {demo}\n'
                             f'  ... --data-root data/demo/{_relative_standard_root(dataset)}')
            else:
                lines.append('Fix the paths in the config or pass --data-root.')
            raise MissingFileError('\n'.join(lines))


def _relative_standard_root(dataset: dict) -> str:
    root = str(dataset.get('data_root') or '')
    return root[len('data/'):] if root.startswith('data/') else root


def _expected_in_channels(head: dict, channels: list[int]) -> Any:
    in_index = head.get('in_index')
    if isinstance(in_index, int):
        return channels[in_index]
    if isinstance(in_index, (list, tuple)):
        return [channels[i] for i in in_index]
    return channels if isinstance(head.get('in_channels'), (list, tuple)) else channels[-1]


def check_neck_channels(cfg: Config) -> None:
    """With a ``visionattn.TimmBackbone``, check the channels the neck and heads expect from it."""
    model = cfg.get('model', {})
    backbone = model.get('backbone', {})
    if backbone.get('type') not in ('visionattn.TimmBackbone', 'TimmBackbone'):
        return
    from .backbones import stage_feature_info
    kwargs = dict(backbone.get('model_kwargs') or {})
    stages = stage_feature_info(backbone['model_name'], in_chans=backbone.get('in_chans', 3), **kwargs)
    out_indices = backbone.get('out_indices', (0, 1, 2, 3))
    channels = [stages[i]['num_chs'] for i in out_indices]
    neck = model.get('neck')
    consumers = [('model.neck', neck)]
    if not (isinstance(neck, dict) and 'in_channels' in neck):  # the heads read the backbone (no neck, or pooling)
        consumers += [('model.decode_head', model.get('decode_head')),
                      ('model.auxiliary_head', model.get('auxiliary_head')), ('model.head', model.get('head'))]
    for where, node in consumers:
        for i, head in enumerate(node if isinstance(node, list) else [node]):
            if not isinstance(head, dict) or 'in_channels' not in head:
                continue
            label = f'{where}.{i}' if isinstance(node, list) else where
            expected = _expected_in_channels(head, channels)
            given = list(head['in_channels']) if isinstance(head['in_channels'], (list, tuple)) else head['in_channels']
            if given != expected:
                raise ConfigError(
                    f"{label}.in_channels is {given}, but backbone {backbone['model_name']} with out_indices "
                    f'{tuple(out_indices)} outputs {channels} channels: set {label}.in_channels={expected}')


_TIMM_MODEL_TYPES = ('visionattn.TimmBackbone', 'TimmBackbone', 'visionattn.TimmClassifier')


def check_band_counts(cfg: Config) -> None:
    """Check that the image loader, the model's ``in_chans`` and the preprocessor's mean/std agree on the bands.

    A multi-band config states the band count in three places (``LoadMultiBandImage(num_bands=...)``, the
    backbone's ``in_chans``, one mean/std value per band); changing one alone fails deep inside a convolution
    or a broadcast.
    """
    counts: dict[str, int] = {}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for dataset in _datasets(cfg.get(loader) or {}):
            for transform in dataset.get('pipeline') or []:
                if isinstance(transform, dict) and str(transform.get('type')).endswith('LoadMultiBandImage'):
                    bands = transform.get('num_bands') or len(transform.get('bands') or ()) or None
                    if bands:
                        counts[f'{loader} LoadMultiBandImage num_bands'] = bands
    model = cfg.get('model') or {}
    network = model if model.get('type') in _TIMM_MODEL_TYPES else model.get('backbone') or {}
    if 'in_chans' in network or 'in_channels' in network:
        counts['in_chans of the model'] = network.get('in_chans', network.get('in_channels'))
    elif network.get('type') in _TIMM_MODEL_TYPES:
        counts['in_chans of the model (default)'] = 3
    for key in ('mean', 'std'):
        values = (model.get('data_preprocessor') or {}).get(key)
        if values is not None and len(values) > 1:  # one value is broadcast over any band count
            counts[f'model.data_preprocessor.{key} (one per band)'] = len(values)
    if len(set(counts.values())) > 1:
        raise ConfigError('the band counts in this config disagree: ' + ', '.join(f'{k} = {v}' for k, v in counts.items())
                          + '. Set them all to the number of bands the model sees.')


def build_runner(cfg: Config):
    """The config's runner; ``visionattn.Runner`` (resume on torch >= 2.6, CPU distribution) by default."""
    from mmengine.registry import RUNNERS
    cfg.setdefault('runner_type', 'visionattn.Runner')
    return RUNNERS.build(cfg)


# Each OpenMMLab package draws test predictions with its own visualization hook; these settings make
# the hook draw every test image into the given folder.
_PREDICTION_PICTURES = {
    'mmseg': ('SegVisualizationHook', lambda out_dir: dict(draw=True, interval=1)),
    'mmdet': ('DetVisualizationHook', lambda out_dir: dict(draw=True, interval=1, test_out_dir=out_dir)),
    'mmpretrain': ('VisualizationHook', lambda out_dir: dict(enable=True, interval=1, out_dir=out_dir)),
}


def enable_prediction_pictures(cfg: Config, out_dir: str) -> str:
    """Have the test run draw every prediction over its image; returns the folder the pictures go to."""
    scope = cfg.get('default_scope')
    if scope not in _PREDICTION_PICTURES:
        raise ConfigError(f'--show-dir supports configs with default_scope in {sorted(_PREDICTION_PICTURES)}, '
                          f'not {scope!r}')
    hook_type, settings = _PREDICTION_PICTURES[scope]
    hooks = cfg.setdefault('default_hooks', ConfigDict())
    hook = hooks.setdefault('visualization', ConfigDict(type=hook_type))
    hook.update(settings(out_dir))
    if scope == 'mmseg':  # SegVisualizationHook saves through the visualizer's local backend
        cfg.visualizer.save_dir = out_dir
        return os.path.join(out_dir, 'vis_data', 'vis_image')
    return out_dir
