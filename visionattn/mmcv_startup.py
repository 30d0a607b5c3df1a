"""The mmcv stand-in from interpreter start, for scripts that import mmdet before any config is read.

``import visionattn`` arms the torchvision-backed ``mmcv._ext`` (:mod:`visionattn.mmcv_compat`), and configs
import visionattn through ``custom_imports``. Stock scripts that import mmdet's engine before reading a config
(mmdet's ``tools/test.py``: ``from mmdet.engine.hooks.utils import ...``) fail first, with ``No module named
'mmcv._ext'``. Only the environment can help there: :func:`install` writes a one-line ``.pth`` file into
site-packages that runs this module at interpreter start. It imports nothing but the standard library and
adds a finder that acts only when ``mmcv._ext`` is imported and mmcv's compiled one is absent; then it
imports :mod:`visionattn.mmcv_compat` (mmcv is importing torch at that moment anyway) and serves its
stand-in. ``bash tools/setup_env.sh`` installs it; elsewhere run ``python -m visionattn.mmcv_startup`` once.
"""
from __future__ import annotations

import importlib.abc
import sys
import sysconfig
from pathlib import Path
from typing import Any, Optional, Sequence

PTH_NAME = 'visionattn-mmcv-ext.pth'
# Runs this file without importing the visionattn package (which imports torch and timm); does nothing when
# visionattn is not installed or this file is gone.
_PTH_LINE = ("import importlib.util as u, os; s = u.find_spec('visionattn'); "
             "p = s and s.submodule_search_locations and os.path.join(list(s.submodule_search_locations)[0], "
             "'mmcv_startup.py'); m = p and os.path.isfile(p) and u.module_from_spec(u.spec_from_file_location("
             "'_visionattn_mmcv_startup', p)); m and m.__spec__.loader.exec_module(m) or (m and m.arm())\n")


class _LazyStandInFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: asked for ``mmcv._ext`` only after mmcv's compiled one was not found."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        if fullname != 'mmcv._ext':
            return None
        from visionattn import mmcv_compat  # importing visionattn arms its own finder as well
        return mmcv_compat._StandInFinder().find_spec(fullname)


def arm() -> None:
    """Append the finder once (the ``.pth`` line calls this at interpreter start)."""
    if not any(type(f).__name__ == _LazyStandInFinder.__name__ for f in sys.meta_path):
        sys.meta_path.append(_LazyStandInFinder())


def install(site_packages: Optional[Path] = None) -> Path:
    """Write the ``.pth`` file into ``site_packages`` (default: this interpreter's); returns its path."""
    folder = Path(site_packages or sysconfig.get_paths()['purelib'])
    path = folder / PTH_NAME
    path.write_text(_PTH_LINE)
    return path


if __name__ == '__main__':
    print(f'wrote {install()}: mmdet and mmseg scripts now import on mmcv-lite from the start')
