#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned stack and visionattn installed in editable mode.
# Idempotent: a second run only checks that the environment is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.visionattn-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 'setuptools<82' wheel
  # torch/torchvision first: pip takes the pinned builds from local disk where they are cached.
  .venv/bin/python -m pip install -q 'torch==2.14.1' 'torchvision==0.29.1'
  .venv/bin/python -m pip install -q --no-build-isolation -e '.[all]'
  touch "$stamp"
fi
# Stock OpenMMLab scripts that import mmdet before reading a config need the mmcv stand-in from interpreter
# start (visionattn.mmcv_startup): a one-line .pth file in site-packages.
if ! ls .venv/lib/python*/site-packages/visionattn-mmcv-ext.pth >/dev/null 2>&1; then
  .venv/bin/python -m visionattn.mmcv_startup
fi
