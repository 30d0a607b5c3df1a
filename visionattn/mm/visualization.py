"""Prediction pictures for multi-band and 16-bit inputs (``tools/test.py --show-dir``).

mmpretrain's ``VisualizationHook`` draws the raw input tensor after ``astype('uint8')`` and mmseg's
``SegVisualizationHook`` re-reads the image file as 8-bit colour: a 13-band image cannot be drawn at all,
16-bit values wrap or come out black. These hooks first render three chosen bands as an 8-bit RGB
picture with a per-image 2-98 percentile stretch (the usual way of viewing satellite and 16-bit medical
images), then draw as the packages do.
"""
from __future__ import annotations

from typing import Sequence

import os.path as osp

import torch
from mmpretrain.engine.hooks import VisualizationHook

import visionattn  # noqa: F401  (arms the mmcv op stand-in before mmseg is imported)
from mmseg.engine.hooks import SegVisualizationHook
from visionattn.mm.transforms import read_raster
from visionattn.registry import HOOKS

__all__ = ['render_bands', 'MultiBandVisualizationHook', 'MultiBandSegVisualizationHook']


def render_bands(image: torch.Tensor, rgb_bands: Sequence[int] = (0, 1, 2),
                 percentiles: tuple[float, float] = (2.0, 98.0)) -> torch.Tensor:
    """A (3, H, W) uint8 picture of bands ``rgb_bands`` of a (C, H, W) image, each stretched to its percentiles."""
    if max(rgb_bands) >= image.shape[0]:
        raise ValueError(f'rgb_bands {tuple(rgb_bands)} needs {max(rgb_bands) + 1} bands; the image has {image.shape[0]}')
    bands = image[list(rgb_bands)].float().flatten(1)
    low = torch.quantile(bands, percentiles[0] / 100, dim=1, keepdim=True)
    high = torch.quantile(bands, percentiles[1] / 100, dim=1, keepdim=True)
    stretched = ((bands - low) / (high - low).clamp_min(1e-6)).clamp(0, 1) * 255
    return stretched.round().to(torch.uint8).reshape(3, *image.shape[1:])


@HOOKS.register_module()
class MultiBandVisualizationHook(VisualizationHook):
    """mmpretrain's ``VisualizationHook`` for inputs of any band count and bit depth.

    Args:
        rgb_bands: the input channels (after the loader's band selection) shown as red, green, blue;
            ``(0, 0, 0)`` shows a single-channel image in grey.
        **kwargs: as mmpretrain's ``VisualizationHook`` (``enable``, ``interval``, ``out_dir``, ...).
    """

    def __init__(self, rgb_bands: Sequence[int] = (0, 1, 2), **kwargs) -> None:
        super().__init__(**kwargs)
        if len(rgb_bands) != 3:
            raise ValueError(f'rgb_bands must name 3 channels, got {tuple(rgb_bands)}')
        self.rgb_bands = tuple(int(b) for b in rgb_bands)

    def _draw_samples(self, batch_idx: int, data_batch: dict, data_samples: Sequence, step: int = 0) -> None:
        pictures = [render_bands(image, self.rgb_bands) for image in data_batch['inputs']]
        super()._draw_samples(batch_idx, dict(data_batch, inputs=pictures), data_samples, step)


@HOOKS.register_module()
class MultiBandSegVisualizationHook(SegVisualizationHook):
    """mmseg's ``SegVisualizationHook`` for images of any band count and bit depth (GeoTIFF, 16-bit PNG).

    Args:
        rgb_bands: the bands of the image file shown as red, green, blue (file band order; the loader's
            ``bands`` selection does not apply here); ``(0, 0, 0)`` shows one band in grey.
        **kwargs: as mmseg's ``SegVisualizationHook`` (``draw``, ``interval``, ...).
    """

    def __init__(self, rgb_bands: Sequence[int] = (0, 1, 2), **kwargs) -> None:
        super().__init__(**kwargs)
        if len(rgb_bands) != 3:
            raise ValueError(f'rgb_bands must name 3 bands, got {tuple(rgb_bands)}')
        self.rgb_bands = tuple(int(b) for b in rgb_bands)

    def _after_iter(self, runner, batch_idx: int, data_batch: dict, outputs: Sequence, mode: str = 'val') -> None:
        if self.draw is False or mode == 'train' or not self.every_n_inner_iters(batch_idx, self.interval):
            return
        for output in outputs:
            image = torch.from_numpy(read_raster(output.img_path, self.backend_args)).permute(2, 0, 1)
            picture = render_bands(image, self.rgb_bands).permute(1, 2, 0).contiguous().numpy()
            self._visualizer.add_datasample(f'{mode}_{osp.basename(output.img_path)}', picture, data_sample=output,
                                            show=self.show, wait_time=self.wait_time, step=runner.iter)
