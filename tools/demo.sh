#!/usr/bin/env bash
# The README's main job: set up .venv if needed, then make the demo data, train, evaluate and draw.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python tools/demo.py "$@"
