#!/usr/bin/env bash
# Optional: replace mmcv-lite with full mmcv 2.1.0 (compiled C++/CUDA ops) built from its source
# distribution against the installed torch. Not needed for anything in this repository: visionattn
# backs the ops its models use with torchvision. Use it for other mmcv ops (e.g. rotated boxes,
# point ops, MultiScaleDeformableAttention).
#
#   bash tools/build_mmcv_full.sh            # CPU ops; with CUDA present, CUDA ops as well
#
# About 30 minutes on 2 cores for the CPU build. Two fixes make mmcv 2.1.0 build on torch 2.14: its
# setup.py imports pkg_resources (setuptools < 82, no build isolation) and hard-codes -std=c++17,
# while torch 2.14's headers need C++20.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m pip install -q 'setuptools<82' ninja
"$PYTHON" -m pip download -q --no-deps --no-build-isolation --no-binary :all: 'mmcv==2.1.0' -d "$work"
tar -xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
src="$work/mmcv-2.1.0"
grep -q -- '-std=c++17' "$src/setup.py" || { echo "unexpected mmcv setup.py: no -std=c++17 flag" >&2; exit 1; }
sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"

# mmcv and mmcv-lite install the same `mmcv` package: remove the lite one first.
"$PYTHON" -m pip uninstall -y mmcv-lite
if "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  export FORCE_CUDA=1
fi
MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PYTHON" -m pip install --no-build-isolation --no-deps "$src"
"$PYTHON" -c 'import mmcv.ops, visionattn.mmcv_compat as c; assert c.compiled_mmcv_available(); print("mmcv", mmcv.__version__, "with compiled ops")'
