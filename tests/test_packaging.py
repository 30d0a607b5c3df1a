"""Packaging: every package ships, the kernels ship as visionattn.kernels, never as a top-level `kernels`."""
from __future__ import annotations

import configparser
import importlib

from conftest import REPO_ROOT


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / 'setup.cfg')
    return parser


def test_every_package_directory_is_listed():
    listed = set(_setup_cfg()['options']['packages'].split())
    on_disk = {'.'.join(p.parent.relative_to(REPO_ROOT).parts) for p in (REPO_ROOT / 'visionattn').rglob('__init__.py')}
    assert on_disk <= listed, f'add to setup.cfg packages: {sorted(on_disk - listed)}'


def test_kernels_install_under_visionattn_only():
    options = _setup_cfg()['options']
    assert 'kernels' not in options['packages'].split()
    assert options['package_dir'].split() == ['visionattn.kernels', '=', 'kernels']
    module = importlib.import_module('visionattn.kernels')
    assert module.__file__.startswith(str(REPO_ROOT / 'kernels'))

