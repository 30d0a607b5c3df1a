#!/usr/bin/env bash
# Distributed training with torchrun: bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args]
# One process per GPU (NCCL); without CUDA the processes train on CPU with the gloo backend.
# When a process dies, torchrun stops the others at once and its report names the failed rank. When one
# stops answering (stopped, hung), the others give up after --dist-timeout SECONDS (default 300 on CPU,
# 600 for NCCL) with a message naming it, and torchrun stops it (SIGTERM, SIGKILL 30 s later).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  tools/train.py "$CONFIG" --launcher pytorch "$@"
