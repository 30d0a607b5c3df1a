#!/usr/bin/env bash
# The prepared GPU check (issue 17 item 5): run it first whenever a GPU machine is available, in one call
# (under 8 minutes on an H200).
#
#   bash tools/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR] [--perturb REL]
#
# 1. Correctness (tools/check_backends.py): every backend of both attention ops (na1d/na2d/na3d with
#    dilation, stride, causal and RPB; bra_attention with routing and padding masks) against the PyTorch
#    path in fp32, fp16 and bf16, the forward and every gradient. A mismatch or a failing backend stops the
#    check here with exit status 1 and a MISMATCH line per tensor: nothing is measured on wrong kernels.
# 2. Kernel tables (tools/benchmark_kernels.py --scope compare, bf16): Triton vs FlexAttention vs the
#    PyTorch path vs the gather/reference formulation vs dense SDPA at the NAT-T and BiFormer-S stage sizes,
#    forward and forward+backward, useful TFLOP/s and peak memory; and from the same rows the measured
#    table the 'auto' backend ranks 'triton' and 'flex' by (auto_backends.json).
# 3. Model throughput (tools/benchmark.py): NAT-T, DiNAT-T and BiFormer-S under bf16 autocast, inference
#    and a training step, on the backends the new 'auto' table picks.
#
# Files (6; the device tool brings back at most 8 from $OUT): check_<device>.md, kernels_<device>.{json,md},
# models_<device>.{json,md} and auto_backends.json. Without --out the tables go to benchmarks/ and, on CUDA,
# the 'auto' table to visionattn/ops/auto_backends.json, where the dispatcher reads it: commit them. With
# --out DIR everything goes to DIR (on the device machine: --out "$OUT"; copy the files back to those places).
#
# --device cpu --quick is the reduced mode the test suite runs (tests/test_gpu_check.py): small problems,
# fp32 only, Triton interpreted, one small model, every step of the script. It needs nothing beyond the
# project's dependencies; on the GPU machine python3 must import torch (CUDA), triton and timm (its image
# has them); PYTHON=path/to/python picks another interpreter.
# --perturb REL is the self-test of the failure path: step 1 scales every backend's results by 1 + REL
# before comparing them (tools/check_backends.py --perturb), so any REL above the bounds must end the
# check there with exit status 1.
set -euo pipefail

device=cuda
quick=0
out=
perturb=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --out) out="$2"; shift 2 ;;
        --perturb) perturb="$2"; shift 2 ;;
        *) echo "error: unknown argument '$1' (usage: bash tools/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR] [--perturb REL])" >&2
           exit 2 ;;
    esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
if [ "$device" = cpu ]; then
    export TRITON_INTERPRET=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
start=$SECONDS
phase() { echo; echo "== [$((SECONDS - start)) s] $*"; }

phase "environment"
name="$("$python" - "$device" <<'EOF'
import re, sys
import torch
device = torch.device(sys.argv[1])
if device.type == 'cuda' and not torch.cuda.is_available():
    sys.exit('error: --device cuda but torch sees no CUDA device (use --device cpu --quick for the CPU run)')
import timm, triton  # noqa: F401,E401  (the check needs both: say so now rather than in step 1)
label = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
print(f'torch {torch.__version__}, triton {triton.__version__}, timm {timm.__version__}, device {label}',
      file=sys.stderr)
print(re.sub(r'[^a-z0-9]+', '_', label.lower()).strip('_'))
EOF
)"
if [ -n "$out" ]; then
    tables="$out"
    auto_table="$out/auto_backends.json"
else
    tables=benchmarks
    auto_table=benchmarks/auto_backends_$name.json
    [ "$device" = cuda ] && auto_table=visionattn/ops/auto_backends.json
fi
mkdir -p "$tables"

if [ $quick = 1 ]; then
    check_args=(--quick --dtype fp32)
    kernel_args=(--scope quick --dtype fp32 --threads 1)
    model_args=(--models nat_mini --img-size 64 --batch 1 --train-batch 1 --repeat 1 --budget 1 --timeout 120)
else
    check_args=(--dtype fp32 fp16 bf16)
    kernel_args=(--scope compare --dtype bf16 --budget 200)
    model_args=(--models nat_tiny dinat_tiny biformer_small --batch 64 --train-batch 32 --repeat 10 --budget 3
                --timeout 60)
fi

phase "1/3 correctness of every backend against the PyTorch path"
if ! "$python" tools/check_backends.py --device "$device" "${check_args[@]}" --perturb "$perturb" --out "$tables/check_$name.md"; then
    echo "GPU CHECK FAILED: a backend disagrees with the PyTorch path (MISMATCH lines above; $tables/check_$name.md)" >&2
    exit 1
fi

phase "2/3 kernel tables and the measured 'auto' table"
"$python" tools/benchmark_kernels.py --op na bra --device "$device" "${kernel_args[@]}" \
    --out "$tables/kernels_$name.json" --auto-table "$auto_table"

phase "3/3 model throughput (autocast, inference and training) on what the new 'auto' table picks"
model_dtype=bf16
[ "$device" = cpu ] && model_dtype=fp32
VISIONATTN_AUTO_TABLE="$auto_table" "$python" tools/benchmark.py --device "$device" --dtype "$model_dtype" \
    "${model_args[@]}" --out "$tables/models_$name.json"

phase "done: wrote $tables/{check_$name.md,kernels_$name.json,kernels_$name.md,models_$name.json,models_$name.md} and $auto_table"
