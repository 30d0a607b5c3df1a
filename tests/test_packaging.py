"""Packaging: every package ships, the kernels ship as visionattn.kernels, never as a top-level `kernels`."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys

from conftest import REPO_ROOT


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / 'setup.cfg')
    return parser


def test_every_package_directory_is_listed():
    listed = set(_setup_cfg()['options']['packages'].split())
    on_disk = {'.'.join(p.parent.relative_to(REPO_ROOT).parts) for p in (REPO_ROOT / 'visionattn').rglob('__init__.py')}
    assert on_disk <= listed, f'add to setup.cfg packages: {sorted(on_disk - listed)}'


def test_kernels_live_at_the_top_and_import_as_visionattn_kernels_only(tmp_path):
    """kernels/ holds the sources; visionattn/kernels links to it, so a plain checkout imports them."""
    options = _setup_cfg()['options']
    assert 'kernels' not in options['packages'].split() and 'package_dir' not in options
    link = REPO_ROOT / 'visionattn' / 'kernels'
    assert link.is_symlink() and link.resolve() == (REPO_ROOT / 'kernels').resolve()
    # a plain checkout on sys.path, from another folder: the kernels import through the link
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    probe = 'import visionattn.kernels.na as k; print(k.__file__)'
    proc = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(link / 'na.py')
    # the installed package (editable here) exposes no top-level `kernels`
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    probe = 'import importlib.util; print(importlib.util.find_spec("kernels") is None)'
    proc = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.stdout.strip() == 'True', proc.stdout + proc.stderr[-2000:]
