"""Per-class metrics (segmentation, classification, detection) against values worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import visionattn.mm  # noqa: F401  (registers the visionattn scope)
from visionattn.mm.metrics import ClsPerClassMetric, DetPerClassAPMetric, SegPerClassMetric


def seg_sample(pred: list[list[int]], gt: list[list[int]]) -> dict:
    return dict(pred_sem_seg=dict(data=torch.tensor([pred])), gt_sem_seg=dict(data=torch.tensor([gt])))


def test_segmentation_per_class_scores_and_image_averages():
    metric = SegPerClassMetric(thresholded_jaccard=0.65)
    metric.dataset_meta = dict(classes=('background', 'lesion'))
    # image 1: lesion tp=2, fp=1, fn=1; background tp=3, fp=1, fn=1; one ignored pixel (255)
    # image 2: no lesion anywhere, all 4 pixels background correct
    metric.process({}, [seg_sample([[1, 1, 1, 0], [0, 0, 0, 0]], [[1, 1, 0, 1], [0, 0, 0, 255]]),
                        seg_sample([[0, 0], [0, 0]], [[0, 0], [0, 0]])])
    scores = metric.evaluate(2)
    # lesion over both images: tp=2 fp=1 fn=1 tn=7 (11 valid pixels)
    assert scores['IoU/lesion'] == pytest.approx(50.0)
    assert scores['Dice/lesion'] == pytest.approx(round(4 / 6 * 100, 2))
    assert scores['Precision/lesion'] == pytest.approx(round(2 / 3 * 100, 2))
    assert scores['Recall/lesion'] == pytest.approx(round(2 / 3 * 100, 2))
    assert scores['Specificity/lesion'] == pytest.approx(round(7 / 8 * 100, 2))
    # background: tp=7 fp=1 fn=1 tn=2
    assert scores['IoU/background'] == pytest.approx(round(7 / 9 * 100, 2))
    assert scores['Specificity/background'] == pytest.approx(round(2 / 3 * 100, 2))
    assert scores['mIoU'] == pytest.approx(round((0.5 + 7 / 9) / 2 * 100, 2))  # mmseg's own value is kept
    # per image: Dice 2/3 and 1 (empty vs empty), IoU 1/2 and 1; thresholded Jaccard: 0 (below 0.65) and 1
    assert scores['mDice_image'] == pytest.approx(round((2 / 3 + 1) / 2 * 100, 2))
    assert scores['mIoU_image'] == pytest.approx(75.0)
    assert scores['thresholded_Jaccard'] == pytest.approx(50.0)


def test_classification_sensitivity_specificity_and_balanced_accuracy():
    metric = ClsPerClassMetric()
    metric.dataset_meta = dict(classes=('MEL', 'NV', 'DF'))
    gts = [0, 0, 1, 1, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 1, 0, 0, 2]
    metric.process({}, [dict(pred_label=torch.tensor([p]), gt_label=torch.tensor([g])) for p, g in zip(preds, gts)])
    scores = metric.evaluate(len(gts))
    assert scores['per_class/accuracy'] == pytest.approx(62.5)
    assert scores['per_class/balanced_accuracy'] == pytest.approx(round((1 / 2 + 3 / 4 + 1 / 2) / 3 * 100, 2))
    # MEL: tp=1 fp=2 fn=1 tn=4
    assert scores['per_class/precision/MEL'] == pytest.approx(33.33)
    assert scores['per_class/sensitivity/MEL'] == pytest.approx(50.0)
    assert scores['per_class/specificity/MEL'] == pytest.approx(round(4 / 6 * 100, 2))
    assert scores['per_class/f1/MEL'] == pytest.approx(40.0)
    # DF: tp=1 fp=0 fn=1 tn=6
    assert scores['per_class/precision/DF'] == pytest.approx(100.0)
    assert scores['per_class/specificity/DF'] == pytest.approx(100.0)
    assert scores['per_class/macro_f1'] == pytest.approx(round(np.mean([0.4, 0.75, 2 / 3]) * 100, 2))


def test_classification_uses_scores_when_no_label_was_predicted():
    metric = ClsPerClassMetric()
    metric.dataset_meta = dict(classes=('a', 'b'))
    metric.process({}, [dict(pred_score=torch.tensor([0.2, 0.8]), gt_label=torch.tensor([1]))])
    assert metric.evaluate(1)['per_class/accuracy'] == pytest.approx(100.0)


def det_sample(gt_boxes, gt_labels, boxes, scores, labels) -> dict:
    empty = dict(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0,), dtype=torch.long))
    return dict(gt_instances=dict(bboxes=torch.tensor(gt_boxes, dtype=torch.float32), labels=torch.tensor(gt_labels)),
                ignored_instances=empty,
                pred_instances=dict(bboxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.tensor(scores),
                                    labels=torch.tensor(labels)))


def test_detection_ap_per_class():
    metric = DetPerClassAPMetric(iou_thrs=0.5)
    metric.dataset_meta = dict(classes=('airplane', 'ship', 'windmill'))
    # airplane found exactly; the ship is missed (its detection is elsewhere); no windmill in the labels
    metric.process({}, [det_sample([[10, 10, 50, 50], [60, 60, 90, 80]], [0, 1],
                                   [[10, 10, 50, 50], [0, 0, 8, 8]], [0.9, 0.8], [0, 1])])
    scores = metric.evaluate(1)
    assert scores['pascal_voc/AP50/airplane'] == pytest.approx(1.0)
    assert scores['pascal_voc/AP50/ship'] == pytest.approx(0.0)
    assert 'pascal_voc/AP50/windmill' not in scores  # no ground truth: no AP
    assert scores['pascal_voc/mAP'] == pytest.approx(0.5) and scores['pascal_voc/AP50'] == pytest.approx(0.5)
