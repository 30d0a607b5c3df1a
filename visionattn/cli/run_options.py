"""The options the train and test programs share, and the checked config they run."""
from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
from typing import Iterator

from mmengine.config import Config, DictAction

from ..console import hold_warnings
from ..errors import ConfigError
from . import add_debug_argument

__all__ = ['add_run_arguments', 'load_run_config', 'config_errors_as_user_errors']


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every run program takes: the config, where results go, overrides, data root, launcher."""
    parser.add_argument('config', help='config file, or the name of a config shipped with visionattn: its path '
                        'under configs/ (demo/biformer_tiny_ade20k_demo) or its file name (biformer_tiny_ade20k_demo.py)')
    parser.add_argument('--work-dir', help='where logs, checkpoints and metrics go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. train_cfg.max_iters=100 (keys are checked)')
    parser.add_argument('--data-root', help="replace the config's data_root (e.g. a demo stand-in)")
    parser.add_argument('--tensorboard', action='store_true',
                        help='also write TensorBoard events (losses, learning rate, metrics) to '
                        '<work_dir>/<timestamp>/vis_data; same as --cfg-options tensorboard=True')
    parser.add_argument('--verbose', action='store_true',
                        help='show everything on the console: environment, full config, hook order, per-class '
                        'tables and third-party warnings (always in the log file)')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none', help='job launcher')
    parser.add_argument('--dist-timeout', type=float, metavar='SECONDS',
                        help='distributed runs: how long a collective operation waits for the other processes before '
                        'the run stops, naming the process that did not answer (env_cfg.dist_cfg.timeout; default '
                        '300 on CPU/gloo, 600 for NCCL)')
    parser.add_argument('--skip-bad-samples', action='store_true',
                        help='leave out images and masks that are missing, damaged or invalid instead of stopping at '
                        'the first (training: another sample takes its place; evaluation: it is not scored); each is '
                        'logged and their number goes into the metrics JSON')
    parser.add_argument('--non-strict', action='store_true',
                        help='load a checkpoint that does not fit the model: only the matching tensors, with a '
                        'warning that names the rest (default: stop with that report)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    add_debug_argument(parser)


def load_run_config(args: argparse.Namespace, loaders: tuple[str, ...],
                    cfg_options: dict | None = None) -> Config:
    """The config a program runs (options of :func:`add_run_arguments`, plus the program's own ``cfg_options``),
    checked before anything is built: the training length, the data roots of ``loaders``, the model (timm
    names, backbone options, neck channels) and the band counts."""
    if not args.verbose:
        hold_warnings()  # third-party warnings (from here on: the OpenMMLab imports) go to the run's log file
    from visionattn.mm.config import check_band_counts, check_data_roots, check_model, load_config
    from visionattn.mm.validation import enable_bad_sample_skipping

    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    options = {**(args.cfg_options or {}), **(cfg_options or {})}
    cfg = load_config(args.config, options, args.work_dir, args.data_root)
    if args.tensorboard:
        cfg.tensorboard = True
    check_data_roots(cfg, loaders)
    check_model(cfg)
    check_band_counts(cfg)
    cfg.launcher = args.launcher
    if args.dist_timeout is not None:
        if not args.dist_timeout > 0:
            raise ConfigError(f'--dist-timeout must be a positive number of seconds, got {args.dist_timeout:g}')
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['timeout'] = args.dist_timeout
    if args.skip_bad_samples:
        enable_bad_sample_skipping(cfg, loaders)
    if args.non_strict:
        cfg.load_strict = False
    if args.verbose:
        cfg.console = 'verbose'
    return cfg


_NOT_REGISTERED = re.compile(r'^(?P<name>\S+) is not in the (?P<registry>\S+) registry')


@contextlib.contextmanager
def config_errors_as_user_errors() -> Iterator[None]:
    """A ``type`` the config names that no registry holds (mmengine's ``KeyError`` while building) becomes a
    :class:`ConfigError` saying so; anything else passes through."""
    try:
        yield
    except KeyError as err:
        found = _NOT_REGISTERED.match(str(err.args[0]) if err.args else '')
        if found is None:
            raise
        close = difflib.get_close_matches(found['name'], _registered_types(found['registry']), n=3, cutoff=0.6)
        hint = f'Did you mean {close}?' if close else "This project's types are named 'visionattn.<Name>'."
        raise ConfigError(f"the config names type {found['name']!r}, which is not registered in {found['registry']}. "
                          f'{hint} (A config using this project needs '
                          "custom_imports=dict(imports=['visionattn.mm']).)") from err


def _registered_types(where: str) -> list[str]:
    """Every type name a config can give to the registry ``scope::name`` (others' scopes prefixed)."""
    import mmengine.registry as registries
    scope, _, name = where.rpartition('::')
    roots = [r for r in vars(registries).values() if isinstance(r, registries.Registry) and r.name == name]
    names: list[str] = []
    pending = list(roots)
    while pending:
        registry = pending.pop()
        prefix = '' if registry.scope in (scope, 'mmengine') else f'{registry.scope}.'
        names += [prefix + key for key in registry.module_dict]
        pending += registry.children.values()
    return names
