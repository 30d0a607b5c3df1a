#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite (CPU; Triton kernels under TRITON_INTERPRET=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
# Two workers (one per core of the CI machine), the long end-to-end runs first (tests/conftest.py).
exec .venv/bin/python -m pytest -q -n 2 --dist worksteal "$@"
