"""Loading an OpenMMLab config and checking it before a run (what the train and test programs share).

mmengine reports most config mistakes late and obscurely (a typo in ``--cfg-options`` silently adds an
unused key; a missing dataset surfaces as an empty-dataset error deep in a dataloader worker; neck
channels that do not match a swapped backbone fail inside a convolution; a syntax error in a config is
reported in ``File "<unknown>"``; ``max_iters=-3`` trains nothing and exits 0). The checks here run before
anything is built and raise a :class:`~visionattn.errors.UserError` that says what to do.

Configs are found by path or by name: :func:`resolve_config` also looks in the configs shipped inside the
package (``visionattn/.mim/configs``, OpenMMLab's ``.mim`` convention, a link to the top-level ``configs/``
in a checkout), so ``demo/biformer_tiny_ade20k_demo`` or ``biformer_tiny_ade20k_demo.py`` work from any folder.
"""
from __future__ import annotations

import ast
import difflib
import inspect
import os
import traceback
from pathlib import Path
from typing import Any, Iterator

from mmengine.config import Config, ConfigDict
from mmengine.registry import (DATASETS, EVALUATOR, HOOKS, LOOPS, METRICS, MODELS, OPTIM_WRAPPERS, OPTIMIZERS,
                               PARAM_SCHEDULERS, TRANSFORMS, VISUALIZERS, init_default_scope)

import visionattn.mm  # noqa: F401  (registers the visionattn scope; arms the mmcv stand-in)
from visionattn.errors import ConfigError, MissingFileError

from .schedule import SCHEDULE_KEY, check_length_options, check_train_length, note_length_override

__all__ = ['load_config', 'resolve_config', 'config_root', 'build_runner', 'enable_prediction_pictures',
           'enable_tensorboard', 'check_data_roots', 'check_model', 'check_neck_channels', 'check_band_counts',
           'ConfigError', 'DATASET_SOURCES']


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


def config_root() -> Path:
    """The configs shipped with the package (``visionattn/.mim/configs``; in a checkout, the top-level ``configs/``)."""
    return Path(visionattn.mm.__file__).resolve().parent.parent / '.mim' / 'configs'


def _shipped_configs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob('*.py') if '_base_' not in p.relative_to(root).parts)


def resolve_config(name: str | os.PathLike) -> Path:
    """The config file ``name`` stands for: a path, else a config shipped with the package.

    Shipped configs are found by their path under ``configs/`` (``demo/biformer_tiny_ade20k_demo``, with or
    without ``.py``) or by their file name alone (``biformer_tiny_ade20k_demo.py``, as ``mim train`` does).
    """
    path = Path(name)
    if path.is_file():
        return path
    root = config_root()
    filename = path.name if path.suffix == '.py' else path.name + '.py'
    candidates = [root / path, root / path.with_name(filename)]
    found = next((c for c in candidates if c.is_file()), None)
    if found is not None:
        return found.resolve()
    shipped = _shipped_configs(root) if root.is_dir() else []
    matches = [p for p in shipped if p.name == filename]
    if len(matches) == 1:
        return matches[0].resolve()
    if len(matches) > 1:
        raise ConfigError(f'config {name}: several shipped configs have that file name, give its folder too: '
                          + ', '.join(str(m.relative_to(root).with_suffix('')) for m in matches))
    names = [str(p.relative_to(root).with_suffix('')) for p in shipped]
    close = difflib.get_close_matches(str(path.with_suffix('')), names, n=3, cutoff=0.5) or \
        difflib.get_close_matches(path.stem, [Path(n).name for n in names], n=3, cutoff=0.5)
    hint = f' Did you mean {close}?' if close else ''
    raise MissingFileError(f'config {name} is neither a file nor a config shipped with visionattn ({root}).{hint}')


def _base_files(path: Path, tree: ast.Module) -> list[Path]:
    """The ``_base_`` files a config names (local paths only; ``package::path`` bases are mmengine's)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            bases = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
            return [path.parent / b for b in bases if isinstance(b, str) and '::' not in b]
    return []


def _config_files(path: Path) -> list[Path]:
    """``path`` and every local ``_base_`` below it, each checked for syntax errors and existence."""
    seen: list[Path] = []
    pending = [path]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.append(current)
        try:
            tree = ast.parse(current.read_text(), filename=str(current))
        except SyntaxError as err:
            line = f'\n    {err.text.rstrip()}' if err.text else ''
            raise ConfigError(f'syntax error in config {current}, line {err.lineno}: {err.msg}{line}') from err
        for base in _base_files(current, tree):
            if not base.is_file():
                raise ConfigError(f'config {current}: its _base_ file {base} does not exist')
            pending.append(base.resolve())
    return seen


def _read_config(path: Path) -> Config:
    """``Config.fromfile`` with errors that name the config file and line (mmengine says ``<unknown>``)."""
    files = _config_files(path.resolve())
    try:
        return Config.fromfile(str(path))
    except Exception as err:  # anything a config's own code raises is a mistake in the config
        names = {str(f) for f in files}
        frames = [f for f in traceback.extract_tb(err.__traceback__) if str(Path(f.filename).resolve()) in names]
        where = f'{frames[-1].filename}, line {frames[-1].lineno}' if frames else str(path)
        if isinstance(err, KeyError) and not frames:  # mmengine's lookup of a {{_base_.name}} reference
            what = f'{{{{_base_.{err.args[0]}}}}} names no variable of its bases'
        else:
            what = f'{type(err).__name__}: {err}'
        raise ConfigError(f'config {where}: {what}') from err


def load_config(path: str | os.PathLike, cfg_options: dict[str, Any] | None = None, work_dir: str | None = None,
                data_root: str | None = None) -> Config:
    """Read a config (a path or a shipped config's name, :func:`resolve_config`), apply (checked)
    ``--cfg-options`` and an optional dataset root, set ``work_dir``.

    ``data_root`` replaces the config's top-level ``data_root`` wherever it prefixes a path (dataloaders
    and evaluators' annotation files alike), e.g. to run a config on the demo stand-in. A changed
    ``train_cfg.max_iters`` / ``max_epochs`` is recorded (``schedule_written_for``) so that the Runner
    rescales the param schedulers to it (:mod:`visionattn.mm.schedule`).
    """
    path = resolve_config(path)
    cfg = _read_config(path)
    if cfg.get('default_scope'):
        init_default_scope(cfg.default_scope)
    if cfg_options:
        written_for = cfg.get('train_cfg')
        written_for = dict(written_for) if written_for else None
        check_length_options(cfg, cfg_options)
        for key in cfg_options:
            _check_option_key(cfg, key)
        cfg.merge_from_dict(cfg_options)
        note_length_override(cfg, written_for, cfg_options)
    check_train_length(cfg)
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
        cfg.work_dir = os.path.join('work_dirs', path.stem)
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
                             f'  python -m visionattn.cli.make_demo_data --out data/demo --tasks {demo}\n'
                             f'  ... --data-root {_demo_root(cfg, dataset)}')
            else:
                lines.append('Fix the paths in the config or pass --data-root.')
            raise MissingFileError('\n'.join(lines))


def _demo_root(cfg: Config, dataset: dict) -> str:
    """Where ``make_demo_data --out data/demo`` puts the stand-in of ``dataset``: the config's own root
    (before ``--data-root``) with its ``data/`` (or ``data/demo/``) prefix replaced by ``data/demo/``."""
    root = str(dataset.get('data_root') or '')
    if cfg.filename:
        written = _read_config(Path(cfg.filename))
        root = str(written.get('data_root') or root)
    for prefix in ('data/demo/', 'data/'):
        if root.startswith(prefix):
            return 'data/demo/' + root[len(prefix):].rstrip('/')
    return '<the folder make_demo_data prints for that task>'


def _expected_in_channels(label: str, head: dict, channels: list[int], backbone: str) -> Any:
    in_index = head.get('in_index')
    indices = [in_index] if isinstance(in_index, int) else list(in_index) if isinstance(in_index, (list, tuple)) else []
    outside = [i for i in indices if not (isinstance(i, int) and -len(channels) <= i < len(channels))]
    if outside:
        raise ConfigError(f'{label}.in_index {in_index!r} picks backbone outputs that do not exist: {backbone} gives '
                          f'{len(channels)} outputs (indices 0..{len(channels) - 1}, channels {channels}); '
                          f'set {label}.in_index (and in_channels) to match out_indices')
    if isinstance(in_index, int):
        return channels[in_index]
    if isinstance(in_index, (list, tuple)):
        return [channels[i] for i in in_index]
    return channels if isinstance(head.get('in_channels'), (list, tuple)) else channels[-1]


def check_model(cfg: Config) -> None:
    """The model's timm names exist, its backbone options are in range, its neck and heads fit the backbone."""
    model = cfg.get('model') or {}
    if model.get('type') in _TIMM_MODEL_TYPES:
        from .backbones import check_model_name
        check_model_name(model.get('model_name'))
    check_neck_channels(cfg)


def check_neck_channels(cfg: Config) -> None:
    """With a ``visionattn.TimmBackbone``, check its options (model name, ``out_indices``, ``frozen_stages``)
    and the channels the neck and heads expect from it."""
    model = cfg.get('model', {})
    backbone = model.get('backbone', {})
    if backbone.get('type') not in ('visionattn.TimmBackbone', 'TimmBackbone'):
        return
    from .backbones import check_stage_options, stage_feature_info
    kwargs = dict(backbone.get('model_kwargs') or {})
    stages = stage_feature_info(backbone.get('model_name'), in_chans=backbone.get('in_chans', 3), **kwargs)
    out_indices = backbone.get('out_indices', (0, 1, 2, 3))
    try:
        indices = check_stage_options(backbone['model_name'], len(stages), out_indices,
                                      backbone.get('frozen_stages', -1))
    except ConfigError as err:
        raise ConfigError(f'model.backbone: {err}') from None
    channels = [stages[i]['num_chs'] for i in indices]
    described = f"backbone {backbone['model_name']} with out_indices {tuple(out_indices)}"
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
            expected = _expected_in_channels(label, head, channels, described)
            given = list(head['in_channels']) if isinstance(head['in_channels'], (list, tuple)) else head['in_channels']
            if given != expected:
                raise ConfigError(f'{label}.in_channels is {given}, but {described} outputs {channels} channels: '
                                  f'set {label}.in_channels={expected}')


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
    """The config's runner; ``visionattn.Runner`` (resume on torch >= 2.6, CPU distribution, schedules that
    follow the training length, TensorBoard switch, quiet console) by default."""
    from mmengine.registry import RUNNERS

    from .runtime import VisionAttnRunner
    cfg.setdefault('runner_type', 'visionattn.Runner')
    runner_cls = RUNNERS.get(cfg.runner_type) if isinstance(cfg.runner_type, str) else cfg.runner_type
    if runner_cls is None:
        raise ConfigError(f'runner_type {cfg.runner_type!r} is not a registered Runner; use visionattn.Runner')
    own_keys = [k for k in (SCHEDULE_KEY, 'tensorboard') if cfg.get(k)]
    if own_keys and not (inspect.isclass(runner_cls) and issubclass(runner_cls, VisionAttnRunner)):
        raise ConfigError(f'{", ".join(own_keys)} need runner_type visionattn.Runner (or a subclass); '
                          f'this config uses {cfg.runner_type}')
    return RUNNERS.build(cfg)


def enable_tensorboard(cfg: Config) -> None:
    """Add mmengine's ``TensorboardVisBackend`` to the config's visualizer (events under
    ``<work_dir>/<timestamp>/vis_data``; ``tensorboard --logdir <work_dir>`` shows them)."""
    import importlib.util
    if importlib.util.find_spec('tensorboard') is None:
        raise ConfigError("TensorBoard logging needs the tensorboard package: pip install 'visionattn[tensorboard]' "
                          '(or pip install tensorboard)')
    visualizer = cfg.get('visualizer')
    if not isinstance(visualizer, dict):
        raise ConfigError('TensorBoard logging needs a visualizer in the config (visualizer=dict(type=..., '
                          'vis_backends=[...])); this config has none')
    backends = list(visualizer.get('vis_backends') or [])
    if not any(str(b.get('type', '')).endswith('TensorboardVisBackend') for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    visualizer['vis_backends'] = backends


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
