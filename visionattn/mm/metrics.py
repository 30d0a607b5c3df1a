"""Per-class metrics as medical and remote-sensing papers report them, in the metrics dict.

mmseg's ``IoUMetric``, mmdet's ``VOCMetric`` and mmpretrain's ``SingleLabelMetric`` compute per-class
values but only print them in a log table (mmpretrain returns unnamed lists); none computes
specificity, the image-averaged Dice that polyp papers report, or ISIC 2018's thresholded Jaccard.
These subclasses keep the packages' own computation and add, under ``<metric>/<class name>`` keys that
reach ``metrics_{val,test}.json``:

- :class:`SegPerClassMetric`: IoU, Dice, precision, recall (= sensitivity) and specificity per class,
  plus, for binary tasks, Dice and IoU of the foreground averaged over images and optionally the
  thresholded Jaccard index.
- :class:`ClsPerClassMetric`: accuracy, balanced accuracy (mean per-class recall, ISIC 2018 Task 3's
  ranking metric), macro F1, and per class precision, sensitivity, specificity and F1.
- :class:`DetPerClassAPMetric`: VOC-style AP per class at each IoU threshold besides mAP.

Values follow each package's convention: percentages for segmentation and classification, fractions
(0-1) for detection.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log

import visionattn  # noqa: F401  (arms the mmcv op stand-in before mmseg/mmdet are imported)
from mmdet.evaluation import VOCMetric
from mmdet.evaluation.functional import eval_map
from mmseg.evaluation import IoUMetric

from visionattn.registry import METRICS

__all__ = ['SegPerClassMetric', 'ClsPerClassMetric', 'DetPerClassAPMetric']


def _percent(value: float) -> float:
    return round(float(value) * 100, 2)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-12), np.nan)


@METRICS.register_module()
class SegPerClassMetric(IoUMetric):
    """mmseg's ``IoUMetric`` plus per-class IoU/Dice/precision/recall/specificity in the returned dict.

    Args:
        thresholded_jaccard: for binary tasks, also report the mean over images of the foreground
            Jaccard index set to 0 where it falls below this value (ISIC 2018 Task 1 uses 0.65).
        iou_metrics: as in ``IoUMetric``; defaults to all of ``mIoU``, ``mDice``, ``mFscore``.

    Per-class keys: ``IoU/<class>``, ``Dice/<class>``, ``Precision/<class>``, ``Recall/<class>``
    (sensitivity), ``Specificity/<class>``; a class absent from both labels and predictions has no entry.
    Binary tasks (two classes) add ``mDice_image`` and ``mIoU_image``: the foreground (class 1) score of
    each image, averaged (an image with neither foreground label nor prediction scores 1).
    """

    def __init__(self, iou_metrics: Sequence[str] = ('mIoU', 'mDice', 'mFscore'),
                 thresholded_jaccard: float | None = None, **kwargs: Any) -> None:
        super().__init__(iou_metrics=list(iou_metrics), **kwargs)
        self.thresholded_jaccard = thresholded_jaccard

    def compute_metrics(self, results: list) -> dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        intersect, union, pred, label = (torch.stack([torch.as_tensor(r[i]) for r in results]).double().numpy()
                                         for i in range(4))
        tp = intersect.sum(0)
        fp = pred.sum(0) - tp
        fn = label.sum(0) - tp
        tn = label.sum() - tp - fp - fn  # valid (not ignored) pixels that are neither labelled nor predicted c
        per_class = OrderedDict(
            IoU=_ratio(tp, tp + fp + fn), Dice=_ratio(2 * tp, 2 * tp + fp + fn), Precision=_ratio(tp, tp + fp),
            Recall=_ratio(tp, tp + fn), Specificity=_ratio(tn, tn + fp))
        for name, values in per_class.items():
            for cls, value in zip(self.dataset_meta['classes'], values):
                if not np.isnan(value):
                    metrics[f'{name}/{cls}'] = _percent(value)
        if len(self.dataset_meta['classes']) == 2:
            metrics.update(self._image_averaged(intersect[:, 1], union[:, 1], pred[:, 1], label[:, 1]))
        return metrics

    def _image_averaged(self, intersect: np.ndarray, union: np.ndarray, pred: np.ndarray,
                        label: np.ndarray) -> dict[str, float]:
        empty = union == 0
        dice = np.where(empty, 1.0, 2 * intersect / np.maximum(pred + label, 1e-12))
        iou = np.where(empty, 1.0, intersect / np.maximum(union, 1e-12))
        out = dict(mDice_image=_percent(dice.mean()), mIoU_image=_percent(iou.mean()))
        if self.thresholded_jaccard is not None:
            out['thresholded_Jaccard'] = _percent(np.where(iou < self.thresholded_jaccard, 0.0, iou).mean())
        return out


@METRICS.register_module()
class ClsPerClassMetric(BaseMetric):
    """Single-label classification scores for imbalanced data, per class by name.

    Returns ``accuracy``, ``balanced_accuracy`` (mean recall over classes present in the labels),
    ``macro_f1``, and ``precision/<class>``, ``sensitivity/<class>`` (recall), ``specificity/<class>``,
    ``f1/<class>`` for each class with samples or predictions.
    """

    default_prefix = 'per_class'

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_label'] if 'pred_label' in sample else sample['pred_score'].argmax(-1)
            self.results.append((int(torch.as_tensor(pred).reshape(-1)[0]),
                                 int(torch.as_tensor(sample['gt_label']).reshape(-1)[0])))

    def compute_metrics(self, results: list) -> dict[str, float]:
        classes = self.dataset_meta['classes']
        k = len(classes)
        confusion = np.zeros((k, k), np.int64)  # rows: ground truth, columns: prediction
        for pred, gt in results:
            confusion[gt, pred] += 1
        tp = np.diag(confusion).astype(np.float64)
        support, predicted = confusion.sum(1), confusion.sum(0)
        fp, fn = predicted - tp, support - tp
        tn = confusion.sum() - tp - fp - fn
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        specificity, f1 = _ratio(tn, tn + fp), _ratio(2 * tp, 2 * tp + fp + fn)
        present = support > 0
        metrics = dict(accuracy=_percent(tp.sum() / max(confusion.sum(), 1)),
                       balanced_accuracy=_percent(np.mean(recall[present])) if present.any() else 0.0,
                       macro_f1=_percent(np.nanmean(np.where(present, np.nan_to_num(f1), np.nan)))
                       if present.any() else 0.0)
        for name, values in (('precision', precision), ('sensitivity', recall), ('specificity', specificity),
                             ('f1', f1)):
            for cls, value, used in zip(classes, values, present | (predicted > 0)):
                if used and not np.isnan(value):
                    metrics[f'{name}/{cls}'] = _percent(value)
        return metrics


@METRICS.register_module()
class DetPerClassAPMetric(VOCMetric):
    """mmdet's ``VOCMetric`` (mAP at each IoU threshold) plus ``AP<thr>/<class>`` for every class with ground truth.

    Defaults to ``eval_mode='area'`` (the area under the interpolated precision-recall curve, as VOC
    2010+ and DIOR/DOTA-style benchmarks compute AP); ``'11points'`` gives the VOC 2007 variant.
    """

    def __init__(self, eval_mode: str = 'area', **kwargs: Any) -> None:
        super().__init__(eval_mode=eval_mode, metric='mAP', **kwargs)

    def compute_metrics(self, results: list) -> dict[str, float]:
        logger: MMLogger = MMLogger.get_current_instance()
        gts, preds = zip(*results)
        classes = self.dataset_meta['classes']
        metrics: dict[str, float] = OrderedDict()
        mean_aps = []
        for iou_thr in self.iou_thrs:
            print_log(f'\n{"-" * 15}iou_thr: {iou_thr}{"-" * 15}', logger)
            mean_ap, per_class = eval_map(preds, gts, scale_ranges=self.scale_ranges, iou_thr=iou_thr,
                                          dataset=list(classes), logger=logger, eval_mode=self.eval_mode,
                                          use_legacy_coordinate=True)
            tag = f'AP{int(round(iou_thr * 100)):02d}'
            mean_aps.append(mean_ap)
            metrics[tag] = round(float(mean_ap), 4)
            for cls, result in zip(classes, per_class):
                if result['num_gts'] > 0:
                    metrics[f'{tag}/{cls}'] = round(float(result['ap']), 4)
        metrics['mAP'] = round(float(np.mean(mean_aps)), 4)
        metrics.move_to_end('mAP', last=False)
        return metrics
