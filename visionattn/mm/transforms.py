"""Loading and augmenting images: checked loading for every config, and 16-bit, single-channel, multi-band GeoTIFF.

None of mmcv, mmseg, mmdet or mmpretrain covers these cases without losing data silently:

- mmcv's ``LoadImageFromFile`` (the loader of every standard pipeline) fails on an empty, truncated or
  undecodable file with a bare ``AssertionError`` and passes images of degenerate shape (1000x2) on to
  fail in a resize. :class:`LoadImageFromFile` is that loader with the checks of
  :mod:`visionattn.mm.validation`: each such file stops with its name, what is wrong and what to do.
- mmcv's ``LoadImageFromFile`` decodes to 8-bit colour by default and cannot read multi-band TIFF;
  mmseg's ``LoadSingleRSImageFromFile`` needs GDAL. :class:`LoadMultiBandImage` reads TIFF/GeoTIFF with
  ``tifffile`` (pure Python) and other formats with OpenCV's ``IMREAD_UNCHANGED``, keeps the dtype
  (16-bit stays 16-bit: normalise in the data preprocessor), selects or reorders bands, and checks the
  band count against the config.
- mmseg's ``LoadAnnotations`` casts masks to uint8 (16-bit values wrap), accepts colour masks and 0/255
  masks and lets them fail far away (or train on wrong labels). :class:`LoadSegAnnotations` reads any
  mask, can binarise 0/255 (or JPEG-compressed) masks, and checks that the values are class indices and
  that the mask has its image's size.
- The packages' albumentations wrappers hand images over as they are, but albumentations 2.x takes float
  images to lie in [0, 1] and clips them (a 16-bit or reflectance image loses everything above 1),
  mmseg's wrapper converts BGR/RGB with ``cvtColor`` (fails for other than 3 channels), and albumentations
  ignores unknown (e.g. 1.x) argument names with a warning. :class:`Albumentations` rescales non-uint8
  images to [0, 1] by a stated maximum and back, turns unknown arguments into errors, and keeps
  ``img_shape`` and the mask in step.

Every loader here reads files through :mod:`visionattn.mm.validation` (missing, empty, damaged files and
degenerate images raise :class:`~visionattn.errors.MissingFileError` / :class:`~visionattn.errors.DataError`).
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import albumentations
import cv2
import numpy as np
import tifffile
from mmcv.transforms import BaseTransform
from mmcv.transforms import LoadImageFromFile as _MMCVLoadImageFromFile
from PIL import Image

import visionattn  # noqa: F401  (arms the mmcv op stand-in before mmseg is imported)
from mmseg.datasets.transforms import LoadAnnotations
from visionattn.errors import ConfigError, DataError
from visionattn.registry import TRANSFORMS

from .validation import SKIP_HINT, check_image_size, decode_image, read_file

__all__ = ['read_raster', 'band_statistics', 'LoadImageFromFile', 'LoadMultiBandImage', 'LoadSegAnnotations',
           'Albumentations']

#: Default ``max_aspect_ratio`` of the image loaders: resized to a few hundred pixels, a 20:1 image still has a
#: short side of several pixels.
MAX_ASPECT_RATIO = 20.0

_TIFF_SUFFIXES = ('.tif', '.tiff')


def _read_tiff(data: bytes, path: str) -> np.ndarray:
    """A TIFF as (H, W, bands) in file band order, whatever its planar configuration."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        series = tif.series[0]
        array, axes = series.asarray(), series.axes
    if array.ndim == 2:
        return array[..., None]
    if array.ndim != 3 or 'Y' not in axes or 'X' not in axes:
        raise DataError(f'{path}: TIFF with axes {axes!r} and shape {array.shape}; expected one 2-D image '
                        'with bands (Y, X and one band axis)')
    band_axis = next(i for i, a in enumerate(axes) if a not in 'YX')
    return np.moveaxis(array, band_axis, -1)


def read_raster(path: str, backend_args: dict | None = None, for_mask: bool = False) -> np.ndarray:
    """Pixels of ``path`` as (H, W, C) in file channel order, dtype unchanged.

    TIFF/GeoTIFF is read with tifffile; masks with Pillow (palette PNGs keep their indices); other
    images with OpenCV ``IMREAD_UNCHANGED`` (16-bit PNG stays 16-bit), colour converted to RGB(A). A missing,
    empty or undecodable file raises :class:`~visionattn.errors.MissingFileError` / ``DataError``.
    """
    data = read_file(path, backend_args)
    if path.lower().endswith(_TIFF_SUFFIXES):
        array = decode_image(data, path, lambda d: _read_tiff(d, path))
    elif for_mask:
        array = decode_image(data, path, lambda d: np.asarray(Image.open(io.BytesIO(d))))
    else:
        array = decode_image(data, path, lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED))
        if array.ndim == 3 and array.shape[2] in (3, 4):
            array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB if array.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return array if array.ndim == 3 else array[..., None]


def band_statistics(paths: Sequence[str], bands: Sequence[int] | None = None,
                    backend_args: dict | None = None) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over all pixels of ``paths`` (e.g. the training images).

    The values for the data preprocessor's ``mean``/``std`` of a multi-band or 16-bit config; ``bands``
    selects and orders bands as :class:`LoadMultiBandImage` does. Sums are accumulated in float64.
    """
    if not paths:
        raise ValueError('band_statistics needs at least one image path')
    total = total_sq = None
    count = 0
    for path in paths:
        img = read_raster(path, backend_args)
        if bands is not None:
            img = img[..., list(bands)]
        pixels = img.reshape(-1, img.shape[-1]).astype(np.float64)
        if total is not None and pixels.shape[1] != len(total):
            raise DataError(f'{path} has {pixels.shape[1]} bands, the images before it {len(total)}')
        total = pixels.sum(0) + (0 if total is None else total)
        total_sq = (pixels ** 2).sum(0) + (0 if total_sq is None else total_sq)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0))
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


@TRANSFORMS.register_module()
class LoadImageFromFile(_MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments, same pixels: BGR uint8 by default) with the checks every
    pipeline needs: a missing, empty, truncated or undecodable file, or an image whose aspect ratio exceeds
    ``max_aspect_ratio`` (None: no limit), stops with the file, what is wrong and what to do.
    """

    def __init__(self, to_float32: bool = False, color_type: str = 'color', imdecode_backend: str = 'cv2',
                 max_aspect_ratio: float | None = MAX_ASPECT_RATIO, backend_args: dict | None = None) -> None:
        super().__init__(to_float32=to_float32, color_type=color_type, imdecode_backend=imdecode_backend,
                         backend_args=backend_args)
        self.max_aspect_ratio = max_aspect_ratio

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        img = decode_image(read_file(path, self.backend_args), path, flag=self.color_type,
                           backend=self.imdecode_backend)
        check_image_size(img.shape, path, self.max_aspect_ratio)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(to_float32={self.to_float32}, color_type='{self.color_type}', "
                f"imdecode_backend='{self.imdecode_backend}', max_aspect_ratio={self.max_aspect_ratio}, "
                f'backend_args={self.backend_args})')


@TRANSFORMS.register_module()
class LoadMultiBandImage(BaseTransform):
    """Load an image of any band count and bit depth (GeoTIFF, 16-bit PNG, grey) without losing bits.

    Channels come in file order (RGB for colour files, unlike mmcv's BGR: use ``bgr_to_rgb=False`` /
    ``to_rgb=False`` in the data preprocessor) and keep the file's dtype.

    Args:
        bands: 0-based band indices to keep, in the order given (e.g. ``(3, 2, 1)`` for Sentinel-2
            B04, B03, B02 = R, G, B); ``None`` keeps all.
        num_bands: the channel count the config expects after band selection (the model's ``in_chans``
            and the length of the preprocessor's mean/std); a file with another count is an error.
        to_float32: return float32 (exact for 8- and 16-bit data).
        max_aspect_ratio: refuse images whose sides differ more (None: no limit), as :class:`LoadImageFromFile`.
        backend_args: mmengine file backend arguments.
    """

    def __init__(self, bands: Sequence[int] | None = None, num_bands: int | None = None,
                 to_float32: bool = False, max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
                 backend_args: dict | None = None) -> None:
        self.bands = None if bands is None else [int(b) for b in bands]
        if num_bands is not None and self.bands is not None and len(self.bands) != num_bands:
            raise ConfigError(f'bands selects {len(self.bands)} bands but num_bands is {num_bands}')
        self.num_bands = num_bands
        self.to_float32 = to_float32
        self.max_aspect_ratio = max_aspect_ratio
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        img = read_raster(path, self.backend_args)
        check_image_size(img.shape, path, self.max_aspect_ratio, 'visionattn.LoadMultiBandImage')
        if self.bands is not None:
            bad = [b for b in self.bands if not 0 <= b < img.shape[2]]
            if bad:
                raise DataError(f'{path} has {img.shape[2]} bands (0..{img.shape[2] - 1}); bands={self.bands} '
                                f'asks for {bad}')
            img = img[..., self.bands]
        if self.num_bands is not None and img.shape[2] != self.num_bands:
            raise DataError(
                f'{path} has {img.shape[2]} band(s) but the config expects {self.num_bands}. Make the data and '
                'the config agree: num_bands here, in_chans of the backbone and the mean/std of the data '
                'preprocessor (one value per band) must all equal the band count; or pick bands with bands=[...].')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = np.ascontiguousarray(img)
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(bands={self.bands}, num_bands={self.num_bands}, '
                f'to_float32={self.to_float32}, max_aspect_ratio={self.max_aspect_ratio})')


def _describe(values: np.ndarray, limit: int = 12) -> str:
    shown = ', '.join(str(v) for v in values[:limit])
    return f'{{{shown}{", ..." if len(values) > limit else ""}}}'


@TRANSFORMS.register_module()
class LoadSegAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` for masks of any format, with the checks users need most.

    Reads PNG/JPEG (Pillow: palette indices kept), 16-bit PNG and TIFF masks. Then:

    - ``binary_threshold``: for binary masks stored as 0/255 images (possibly JPEG-compressed, e.g.
      Kvasir-SEG), pixels >= threshold become 1 and the rest 0 (colour masks: the channel mean is used).
    - the dataset's ``reduce_zero_label`` and ``label_map`` apply as in mmseg.
    - every value must then be a class index ``0..num_classes-1`` or ``ignore_index``; the mask must have
      the size of its image (``ori_shape``). Otherwise a :class:`~visionattn.errors.DataError` names the file
      and the fix.

    ``num_classes`` comes from the dataset (visionattn's datasets put it in each sample) or this argument.
    """

    def __init__(self, binary_threshold: int | None = None, num_classes: int | None = None,
                 ignore_index: int = 255, backend_args: dict | None = None) -> None:
        super().__init__(backend_args=backend_args)
        self.binary_threshold = binary_threshold
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def _single_channel(self, mask: np.ndarray, path: str) -> np.ndarray:
        if mask.shape[2] == 1:
            return mask[..., 0]
        if self.binary_threshold is not None:
            return mask[..., :3].mean(axis=2)
        if all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, min(mask.shape[2], 3))):
            return mask[..., 0]  # grey levels saved as RGB
        raise DataError(
            f'{path} is a colour mask ({mask.shape[2]} channels with different values). Masks must hold one '
            'class index per pixel: convert colour-coded masks to index masks (for ISPRS Potsdam/Vaihingen run '
            "mmseg's tools/dataset_converters/potsdam.py), or set binary_threshold for a black/white mask. "
            + SKIP_HINT)

    def _load_seg_map(self, results: dict) -> None:
        path = results['seg_map_path']
        raw = self._single_channel(read_raster(path, self.backend_args, for_mask=True), path)
        ori_shape = results.get('ori_shape')
        if ori_shape is not None and tuple(raw.shape) != tuple(ori_shape[:2]):
            raise DataError(f'{path} is {raw.shape[0]}x{raw.shape[1]} (HxW) but its image '
                            f'{results.get("img_path")} is {ori_shape[0]}x{ori_shape[1]}: masks must match '
                            'their images pixel for pixel (re-export the mask at the image size, or check '
                            f'that image and mask names pair up). {SKIP_HINT}')
        if self.binary_threshold is not None:
            mask = (raw >= self.binary_threshold).astype(np.int64)
        else:
            mask = raw.astype(np.int64)
        if results.get('reduce_zero_label'):  # as mmseg: 0 becomes ignore_index, ignore_index stays, the rest - 1
            mask = np.where((mask == 0) | (mask == self.ignore_index), self.ignore_index, mask - 1)
        label_map = results.get('label_map')
        if label_map:
            mapped = mask.copy()
            for old_id, new_id in label_map.items():
                mapped[mask == old_id] = new_id
            mask = mapped
        self._check_values(mask, raw, path, results)
        results['gt_seg_map'] = mask.astype(np.uint8)
        results['seg_fields'].append('gt_seg_map')

    def _check_values(self, mask: np.ndarray, raw: np.ndarray, path: str, results: dict) -> None:
        num_classes = self.num_classes or results.get('num_classes')
        if num_classes is None:
            return
        values = np.flatnonzero(np.bincount(mask.ravel())) if mask.min() >= 0 else np.unique(mask)
        bad = values[((values < 0) | (values >= num_classes)) & (values != self.ignore_index)]
        if not len(bad):
            return
        raw_bad = np.unique(raw[np.isin(mask, bad)])
        in_file = '' if np.array_equal(raw_bad, bad) else f' (in the file: {_describe(raw_bad)})'
        hints = []
        if num_classes == 2 and self.binary_threshold is None:
            hints.append('for a binary mask saved as 0/255 (or as JPEG) set binary_threshold=128')
        if results.get('reduce_zero_label'):
            hints.append('reduce_zero_label=True shifts values down by one (0 becomes ignored)')
        hints.append(f'masks must hold class indices 0..{num_classes - 1} (and {self.ignore_index} = ignore), '
                     'not colours or original label ids: remap them, or use the dataset\'s label_map')
        raise DataError(f'{path}: mask values {_describe(bad)}{in_file} are not class indices of this '
                        f'{num_classes}-class dataset (values present after loading: {_describe(values)}). '
                        + '; '.join(hints) + f'. {SKIP_HINT}')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(binary_threshold={self.binary_threshold}, '
                f'num_classes={self.num_classes}, ignore_index={self.ignore_index})')


@TRANSFORMS.register_module()
class Albumentations(BaseTransform):
    """albumentations 2.x transforms for images of any band count and bit depth, and their masks.

    Args:
        transforms: albumentations transforms as dicts (``type`` is the class name in albumentations;
            ``OneOf``/``SomeOf`` take nested ``transforms``). Transforms that albumentations validates are built
            with ``strict=True``, so an argument 2.x does not know (e.g. 1.x's ``var_limit``) is an error
            instead of a warning.
        max_value: the value that maps to 1.0 for images that are not uint8. albumentations' pixel
            transforms (brightness, gamma, noise, ...) take float images to lie in [0, 1] and clip to it;
            the image is divided by ``max_value`` before and multiplied after (so it comes back float32 in
            its own units). Default: 65535 for uint16; required for float images with values above 1.
            For Sentinel-2 L1C digital numbers (reflectance x 10000) use 10000. Pixel transforms clip at
            ``max_value``; geometric ones (flips, rotations, affine, elastic) do not change values.

    Keys: ``img`` -> ``image``, ``gt_seg_map`` -> ``mask``; ``img_shape`` follows the output. Channel order
    is passed on as it is: colour transforms (hue, ``ToGray``) assume RGB, so use them only on images
    loaded in RGB order. Randomness follows numpy's global generator, which mmengine seeds per worker.
    """

    def __init__(self, transforms: list[dict], max_value: float | None = None) -> None:
        if not isinstance(transforms, (list, tuple)) or not transforms:
            raise ConfigError('transforms must be a non-empty list of albumentations transform dicts')
        self.transform_cfgs = [dict(t) for t in transforms]
        self.max_value = max_value
        self.aug = albumentations.Compose([self._build(t) for t in self.transform_cfgs])

    @classmethod
    def _build(cls, cfg: dict) -> Any:
        if not isinstance(cfg, dict) or 'type' not in cfg:
            raise ConfigError(f'each albumentations transform must be a dict with a type, got {cfg!r}')
        args = dict(cfg)
        name = args.pop('type')
        transform_cls = getattr(albumentations, name, None) if isinstance(name, str) else name
        if transform_cls is None:
            raise ConfigError(f'albumentations {albumentations.__version__} has no transform {name!r} (1.x names '
                              'such as JpegCompression and Cutout became ImageCompression and CoarseDropout)')
        if 'transforms' in args:
            args['transforms'] = [cls._build(t) for t in args['transforms']]
        init_owner = next(k for k in transform_cls.__mro__ if '__init__' in vars(k))
        if 'InitSchema' in vars(init_owner):  # albumentations validates these; the others reject unknown names
            args.setdefault('strict', True)
        return transform_cls(**args)

    def _scale(self, img: np.ndarray) -> float:
        if self.max_value is not None:
            return float(self.max_value)
        if img.dtype == np.uint16:
            return 65535.0
        if img.size and float(img.max()) > 1.0:
            raise ConfigError(f'{img.dtype} image with values up to {float(img.max()):g}: albumentations expects '
                              'float images in [0, 1]; set max_value (the value that maps to 1) in Albumentations')
        return 1.0

    def transform(self, results: dict) -> dict:
        img = results['img']
        scale = None if img.dtype == np.uint8 else self._scale(img)
        data = dict(image=img if scale is None else img.astype(np.float32) / scale)
        if results.get('gt_seg_map') is not None:
            data['mask'] = results['gt_seg_map']
        self.aug.set_random_seed(int(np.random.randint(0, 2 ** 31 - 1)))
        out = self.aug(**data)
        image = out['image']
        if scale is not None:
            image = image.astype(np.float32) * scale
        if image.ndim == 2:
            image = image[..., None]
        results['img'] = np.ascontiguousarray(image)
        results['img_shape'] = image.shape[:2]
        if 'mask' in out:
            results['gt_seg_map'] = np.ascontiguousarray(out['mask'])
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(transforms={self.transform_cfgs}, max_value={self.max_value})'


