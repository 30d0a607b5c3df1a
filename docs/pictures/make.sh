#!/usr/bin/env bash
# Makes the README's pictures (docs/pictures/*.png) from the demo's trained models, on CPU.
#
#   bash docs/pictures/make.sh            # from the repository root; PYTHON=... to pick the interpreter
#
# Training (skipped when the checkpoint exists): the demo (tools/demo.py: UPerNet + BiFormer-T on the
# ADE20K stand-in, 200 iterations), the same recipe with DiNAT-Mini (100 iterations), and the Faster
# R-CNN demo with Triplet attention on the COCO stand-in (4 epochs). Then one picture of each kind.
# The committed pictures' models reached, on the stand-ins' validation images: BiFormer-T 96.6% mIoU,
# DiNAT-Mini 73.5% mIoU, Faster R-CNN + Triplet 48.2 box AP (93.0 AP50). On the shared 2-core machine,
# loaded by other jobs (load average 6-12), the three trainings took about 2.5 hours of wall time.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
OUT=docs/pictures
ADE=data/demo/ade/ADEChallengeData2016
SEG_DEMO=configs/demo/biformer_tiny_ade20k_demo.py
NAT_DEMO=configs/demo/upernet_resnet18_ade20k_demo.py
NAT_OPTIONS=(model.backbone.model_name=dinat_mini train_cfg.max_iters=100 train_cfg.val_interval=100
             param_scheduler.0.end=100 default_hooks.checkpoint.interval=100)
DET_DEMO=configs/demo/faster_rcnn_r50_triplet_coco_demo.py

[ -f work_dirs/demo/iter_200.pth ] || $PY tools/demo.py --work-dir work_dirs/demo --data data/demo
[ -d data/demo/coco ] || $PY tools/make_demo_data.py --out data/demo --tasks coco
[ -f work_dirs/demo_triplet/epoch_4.pth ] || $PY tools/train.py $DET_DEMO --work-dir work_dirs/demo_triplet \
    --data-root data/demo/coco --seed 0
[ -f work_dirs/demo_dinat/iter_100.pth ] || $PY tools/train.py $NAT_DEMO --work-dir work_dirs/demo_dinat \
    --data-root $ADE --seed 0 --cfg-options "${NAT_OPTIONS[@]}"
[ "${1:-}" = --train-only ] && exit 0

VAL=$ADE/images/validation
SCENE=$VAL/ADE_val_00000011.jpg      # sky, a building, a tree and a wall
DRAW=($PY tools/visualize.py)
"${DRAW[@]}" routing $SEG_DEMO --checkpoint work_dirs/demo/iter_200.pth --image $SCENE \
    --query 25 12 --query 98 45 --query 45 100 --title 'UPerNet + BiFormer-T, the demo model' \
    --small --out $OUT/routing.png
"${DRAW[@]}" neighborhood $NAT_DEMO --cfg-options "${NAT_OPTIONS[@]}" \
    --checkpoint work_dirs/demo_dinat/iter_100.pth --image $SCENE --query 25 12 --query 98 45 --query 45 100 \
    --layers model.model.stages.0.blocks.0.attn model.model.stages.0.blocks.1.attn model.model.stages.1.blocks.1.attn \
    --title 'UPerNet + DiNAT-Mini, the demo recipe' --small --out $OUT/neighborhood.png
"${DRAW[@]}" neighborhood $NAT_DEMO --cfg-options "${NAT_OPTIONS[@]}" \
    --checkpoint work_dirs/demo_dinat/iter_100.pth --image $SCENE --query 98 45 --query 45 100 --per-head \
    --layers model.model.stages.1.blocks.0.attn --title 'UPerNet + DiNAT-Mini, the demo recipe' \
    --small --out $OUT/neighborhood_heads.png
"${DRAW[@]}" predictions $SEG_DEMO work_dirs/demo/iter_200.pth $SCENE $VAL/ADE_val_00000004.jpg \
    --title 'UPerNet + BiFormer-T, the demo model' --small --out $OUT/segmentation.png
COCO=data/demo/coco/val2017
"${DRAW[@]}" predictions $DET_DEMO work_dirs/demo_triplet/epoch_4.pth $COCO/000000000003.jpg \
    $COCO/000000000016.jpg --title 'Faster R-CNN + ResNet-50/4 with Triplet attention, the detection demo' \
    --small --out $OUT/detection.png
"${DRAW[@]}" gates $DET_DEMO --checkpoint work_dirs/demo_triplet/epoch_4.pth \
    --image $COCO/000000000003.jpg $COCO/000000000016.jpg \
    --title 'Faster R-CNN + ResNet-50/4 with Triplet attention, the detection demo' --small --out $OUT/gates.png
