"""Segmentation and detection predictions drawn over their image by OpenMMLab's own visualizers.

:func:`draw_prediction` runs a model loaded by :func:`visionattn.analysis.loading.load_model` on one
image and draws the result with mmseg's ``SegLocalVisualizer`` (classes coloured with the dataset
palette at ``opacity``) or mmdet's ``DetLocalVisualizer`` (boxes, masks, class names and scores of the
instances scoring at least ``score_thr``), and says which classes the drawing shows in which colour,
for the legend of :func:`visionattn.analysis.figures.predictions_figure`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from .loading import LoadedModel

__all__ = ['Prediction', 'draw_prediction']

_VISUALIZER_NAMES = itertools.count()  # mmengine visualizers are named instances: one new name per drawing


@dataclass
class Prediction:
    """One image's prediction and its drawing."""
    drawn: np.ndarray  # RGB uint8, the image with the prediction drawn over it
    sample: Any  # the model's data sample (pred_sem_seg or pred_instances)
    legend: list[tuple[str, tuple[int, int, int]]]  # (class, RGB colour) of every class in the drawing


def draw_prediction(loaded: LoadedModel, image: np.ndarray, score_thr: float = 0.3, opacity: float = 0.5) -> Prediction:
    """Run ``loaded`` (an mmseg or mmdet model) on the RGB ``image`` and draw its prediction."""
    classes = list(loaded.dataset_meta.get('classes', ()))
    if not classes:
        raise CheckpointError(f'{loaded.title}: the model has no class names (dataset_meta): load a checkpoint saved '
                              'by tools/train.py, whose meta holds them')
    name = f'visionattn-prediction-{next(_VISUALIZER_NAMES)}'
    if loaded.scope == 'mmseg':
        from mmseg.visualization import SegLocalVisualizer
        sample = loaded.infer(image).prediction
        visualizer = SegLocalVisualizer(name=name, alpha=opacity)
        visualizer.dataset_meta = loaded.dataset_meta
        visualizer.add_datasample('prediction', image, sample, draw_gt=False, with_labels=False)
        palette = loaded.dataset_meta['palette']
        # a binary head (one output channel and a threshold) gives its classes as 0.0 / 1.0
        present = np.unique(sample.pred_sem_seg.data.cpu().numpy()).astype(int)
        legend = [(classes[i].strip(), tuple(int(v) for v in palette[i])) for i in present if i < len(classes)]
    elif loaded.scope == 'mmdet':
        from mmdet.visualization import DetLocalVisualizer
        from mmdet.visualization.palette import get_palette
        sample = loaded.infer(image).prediction
        visualizer = DetLocalVisualizer(name=name, alpha=opacity)
        visualizer.dataset_meta = loaded.dataset_meta
        visualizer.add_datasample('prediction', image, sample, draw_gt=False, pred_score_thr=score_thr)
        instances = sample.pred_instances
        labels = instances.labels[instances.scores >= score_thr].tolist()
        # the box colours DetLocalVisualizer uses: its palette over the labels drawn
        colours = get_palette(visualizer.bbox_color or loaded.dataset_meta.get('palette'), max(labels, default=0) + 1)
        legend = [(classes[i].strip() if i < len(classes) else str(i), tuple(int(v) for v in colours[i]))
                  for i in sorted(set(labels))]
    else:
        raise ConfigError(f"predictions are drawn for segmentation ('mmseg') and detection ('mmdet') configs, "
                          f"not {loaded.scope or 'a timm model'}")
    return Prediction(drawn=visualizer.get_image(), sample=sample, legend=legend)
