"""Small, deterministic synthetic stand-ins of public datasets in their real layouts.

:func:`make_demo_data` (``python tools/make_demo_data.py [--out data/demo] [--tasks ...] [--seed 0]``) writes ``<out>/ade/ADEChallengeData2016``, ``<out>/coco`` and ``<out>/imagenet``, and for the medical and
remote-sensing recipes ``<out>/Kvasir-SEG``, ``<out>/ISIC2018`` (Task 1 and Task 3 / HAM10000),
``<out>/LoveDA``, ``<out>/potsdam`` (mmseg's converted layout), ``<out>/DIOR``, ``<out>/EuroSAT``,
``<out>/EuroSATallBands`` (13-band uint16 GeoTIFF) and ``<out>/NWPU-RESISC45``, laid out exactly as
the real datasets (so the standard configs run on them with ``--data-root``). Objects are drawn with
class-specific colour, shape and texture plus noise, so a short schedule beats chance clearly; the
same seed gives the same bytes. A folder that exists and was not made by this tool is never touched.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .errors import UnknownNameError, UserError

MARKER = '.visionattn_demo'

# ADE20K annotation values (1-based; 0 = unlabelled, ignored with reduce_zero_label).
ADE_WALL, ADE_SKY, ADE_TREE, ADE_BED, ADE_PERSON, ADE_CAR = 1, 3, 5, 8, 13, 21

# COCO 2017 category ids (80 classes, ids 1..90 with gaps) and the three the demo draws.
COCO_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
    'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
    'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
    'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
COCO_DRAWN = {'person': 1, 'car': 3, 'sports ball': 37}

# The first five ImageNet-1k classes (label = index in the sorted wnid list).
IMAGENET_CLASSES = ('n01440764', 'n01443537', 'n01484850', 'n01491361', 'n01494475')


def _prepare(folder: Path) -> None:
    """Create ``folder`` for demo data; refuse to write into a folder this tool did not make."""
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
        raise UserError(f'{folder} exists and holds data not made by make_demo_data.py; '
                              'choose another --out (the demo never overwrites real datasets)')
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text('synthetic demo data made by tools/make_demo_data.py\n')


def _textured(rng: np.random.Generator, size: int, colour: tuple[int, int, int], texture: str) -> np.ndarray:
    """A size x size RGB layer of one colour with a class-specific texture and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.array(colour, np.float32) * rng.uniform(0.85, 1.15)
    if texture == 'stripes':
        pattern = 25 * np.sign(np.sin(xx / 2.5))
    elif texture == 'diagonal':
        pattern = 25 * np.sign(np.sin((xx + yy) / 3.0))
    elif texture == 'speckle':
        pattern = rng.normal(0, 30, (size, size))
    elif texture == 'gradient':
        pattern = 60 * (yy / size - 0.5)
    else:  # 'smooth'
        pattern = 10 * np.sin(xx / 17.0 + rng.uniform(0, 6)) * np.cos(yy / 13.0)
    layer = base[None, None, :] + pattern[..., None] + rng.normal(0, 8, (size, size, 3))
    return np.clip(layer, 0, 255)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> list[tuple[float, float]]:
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n)) for i in range(n)]


def _rectangle(cx: float, cy: float, rx: float, ry: float) -> list[tuple[float, float]]:
    return [(cx - rx, cy - ry), (cx + rx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)]


def _polygon_mask(size: int, polygon: list[tuple[float, float]]) -> np.ndarray:
    canvas = Image.new('L', (size, size), 0)
    ImageDraw.Draw(canvas).polygon(polygon, fill=1)
    return np.array(canvas, bool)


def _save_jpeg(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path, quality=92)


# --- ADE20K ----------------------------------------------------------------------------------------
_ADE_OBJECTS: dict[int, tuple[tuple[int, int, int], str, Callable[..., list]]] = {
    ADE_TREE: ((40, 140, 40), 'speckle', _ellipse),
    ADE_BED: ((140, 90, 50), 'stripes', _rectangle),
    ADE_PERSON: ((200, 60, 60), 'smooth', _ellipse),
    ADE_CAR: ((90, 90, 110), 'diagonal', _rectangle),
}


def _ade_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    image = _textured(rng, size, (200, 190, 160), 'smooth')
    label = np.full((size, size), ADE_WALL, np.uint8)
    if rng.random() < 0.6:  # a band of sky at the top
        band = int(size * rng.uniform(0.15, 0.35))
        image[:band] = _textured(rng, size, (110, 160, 230), 'gradient')[:band]
        label[:band] = ADE_SKY
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.choice(list(_ADE_OBJECTS)))
        colour, texture, shape = _ADE_OBJECTS[cls]
        rx, ry = rng.uniform(0.1, 0.25, 2) * size
        if shape is _ellipse and cls == ADE_PERSON:
            rx, ry = min(rx, ry) * 0.6, max(rx, ry)
        cx, cy = rng.uniform(rx, size - rx), rng.uniform(ry, size - ry)
        mask = _polygon_mask(size, shape(cx, cy, rx, ry))
        image[mask] = _textured(rng, size, colour, texture)[mask]
        label[mask] = cls
        edge = mask & ~np.roll(mask, 1, 0) | mask & ~np.roll(mask, 1, 1)
        label[edge] = 0  # unlabelled boundary pixels, as in ADE20K
    return image, label


def make_ade20k(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    root = out / 'ade' / 'ADEChallengeData2016'
    _prepare(root)
    for split, count, stem in (('training', num_train, 'ADE_train'), ('validation', num_val, 'ADE_val')):
        for i in range(1, count + 1):
            image, label = _ade_sample(rng, size)
            _save_jpeg(image, root / 'images' / split / f'{stem}_{i:08d}.jpg')
            ann = root / 'annotations' / split / f'{stem}_{i:08d}.png'
            ann.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(label).save(ann)
    return root


# --- COCO ------------------------------------------------------------------------------------------
_COCO_OBJECTS = {
    'person': ((200, 60, 60), 'smooth', _ellipse, (0.5, 1.0)),
    'car': ((60, 90, 200), 'diagonal', _rectangle, (1.0, 0.55)),
    'sports ball': ((230, 200, 40), 'speckle', _ellipse, (1.0, 1.0)),
}


def _coco_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[dict]]:
    image = _textured(rng, size, (120, 150, 110), 'smooth')
    occupied = np.zeros((size, size), bool)
    objects = []
    for _ in range(rng.integers(1, 5)):
        name = str(rng.choice(list(_COCO_OBJECTS)))
        colour, texture, shape, (ax, ay) = _COCO_OBJECTS[name]
        r = rng.uniform(0.08, 0.2) * size
        rx, ry = r * ax, r * ay
        cx, cy = rng.uniform(rx + 1, size - rx - 1), rng.uniform(ry + 1, size - ry - 1)
        polygon = shape(cx, cy, rx, ry)
        mask = _polygon_mask(size, polygon)
        if (mask & occupied).any() or mask.sum() < 16:
            continue  # keep objects apart so every polygon is the visible object
        occupied |= mask
        image[mask] = _textured(rng, size, colour, texture)[mask]
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        x0, y0 = max(min(xs), 0.0), max(min(ys), 0.0)
        objects.append(dict(category_id=COCO_DRAWN[name], segmentation=[[round(v, 2) for p in polygon for v in p]],
                            area=float(mask.sum()), bbox=[round(x0, 2), round(y0, 2), round(min(max(xs), size) - x0, 2),
                                                          round(min(max(ys), size) - y0, 2)], iscrowd=0))
    return image, objects


def make_coco(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    root = out / 'coco'
    _prepare(root)
    categories = [dict(id=i, name=n, supercategory='demo') for i, n in zip(COCO_IDS, COCO_NAMES)]
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        images, annotations = [], []
        for i in range(1, count + 1):
            image, objects = _coco_sample(rng, size)
            file_name = f'{i:012d}.jpg'
            _save_jpeg(image, root / split / file_name)
            images.append(dict(id=i, file_name=file_name, width=size, height=size))
            for obj in objects:
                annotations.append(dict(obj, id=len(annotations) + 1, image_id=i))
        ann_dir = root / 'annotations'
        ann_dir.mkdir(parents=True, exist_ok=True)
        (ann_dir / f'instances_{split}.json').write_text(json.dumps(
            dict(info=dict(description='visionattn synthetic COCO stand-in'), licenses=[], images=images,
                 annotations=annotations, categories=categories)))
    return root


# --- ImageNet --------------------------------------------------------------------------------------
_IMAGENET_LOOKS = (((220, 120, 40), 'stripes', _ellipse), ((240, 170, 20), 'speckle', _ellipse),
                   ((120, 120, 130), 'smooth', _rectangle), ((90, 110, 90), 'diagonal', _rectangle),
                   ((60, 60, 160), 'gradient', _ellipse))


def _imagenet_sample(rng: np.random.Generator, size: int, label: int) -> np.ndarray:
    image = _textured(rng, size, tuple(int(c) for c in rng.integers(60, 200, 3)), 'smooth')
    colour, texture, shape = _IMAGENET_LOOKS[label]
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    mask = _polygon_mask(size, shape(cx, cy, r, r * rng.uniform(0.6, 1.0)))
    image[mask] = _textured(rng, size, colour, texture)[mask]
    return image


def make_imagenet(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    root = out / 'imagenet'
    _prepare(root)
    (root / 'meta').mkdir(exist_ok=True)
    train_lines, val_lines = [], []
    for label, wnid in enumerate(IMAGENET_CLASSES):
        for i in range(1, num_train + 1):
            rel = f'{wnid}/{wnid}_{i}.JPEG'
            _save_jpeg(_imagenet_sample(rng, size, label), root / 'train' / rel)
            train_lines.append(f'{rel} {label}')
    for i in range(1, num_val * len(IMAGENET_CLASSES) + 1):
        label = (i - 1) % len(IMAGENET_CLASSES)
        name = f'ILSVRC2012_val_{i:08d}.JPEG'
        _save_jpeg(_imagenet_sample(rng, size, label), root / 'val' / name)
        val_lines.append(f'{name} {label}')
    (root / 'meta' / 'train.txt').write_text('\n'.join(train_lines) + '\n')
    (root / 'meta' / 'val.txt').write_text('\n'.join(val_lines) + '\n')
    return root


# --- Medical and remote-sensing layouts ------------------------------------------------------------
# Segmentation makers write num_train / num_val images per split (Kvasir-SEG, published as one folder:
# num_train + 2 * num_val in all, cut by the config's split fractions). Class-folder makers write
# num_train + 2 * num_val images per class, which the configs' split fractions cut into train/val/test.


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _blob(rng: np.random.Generator, size: tuple[int, int], radius: float, wobble: float = 0.25,
          n: int = 24) -> list[tuple[float, float]]:
    """An irregular closed outline (lesion, polyp) inside an image of (height, width) ``size``."""
    h, w = size
    cx, cy = rng.uniform(radius + 2, w - radius - 2), rng.uniform(radius + 2, h - radius - 2)
    radii = radius * (1 + wobble * np.convolve(rng.uniform(-1, 1, n + 4), np.ones(5) / 5, 'valid'))
    return [(cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n)) for i, r in enumerate(radii)]


def _mask_of(size: tuple[int, int], polygon: list[tuple[float, float]]) -> np.ndarray:
    canvas = Image.new('L', (size[1], size[0]), 0)
    ImageDraw.Draw(canvas).polygon(polygon, fill=1)
    return np.array(canvas, bool)


def _canvas(rng: np.random.Generator, size: tuple[int, int], colour: tuple[int, int, int], texture: str) -> np.ndarray:
    """A (height, width, 3) textured layer (``_textured`` is square)."""
    return _textured(rng, max(size), colour, texture)[:size[0], :size[1]]


def _binary_sample(rng: np.random.Generator, size: tuple[int, int], background: tuple, fg: tuple, fg_texture: str,
                   radius: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    image = _canvas(rng, size, background, 'smooth')
    mask = _mask_of(size, _blob(rng, size, rng.uniform(*radius) * min(size)))
    image[mask] = _canvas(rng, size, fg, fg_texture)[mask]
    return image, mask


def make_kvasir_seg(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """``Kvasir-SEG/{images,masks}/<id>.jpg``: one folder, varied sizes, masks as 0/255 RGB JPEGs."""
    root = out / 'Kvasir-SEG'
    _prepare(root)
    for i in range(num_train + 2 * num_val):
        shape = (size, size * 5 // 4) if i % 2 else (size * 5 // 4, size)
        image, mask = _binary_sample(rng, shape, (205, 120, 95), (150, 40, 50), 'speckle', (0.15, 0.3))
        name = f'cju{i:05d}demo{int(rng.integers(10 ** 6)):06d}'
        _save_jpeg(image, root / 'images' / f'{name}.jpg')
        _save_jpeg(np.repeat(mask[..., None] * 255, 3, axis=2), root / 'masks' / f'{name}.jpg')
    return root


_ISIC_SPLITS = (('Training', 'num_train'), ('Validation', 'num_val'), ('Test', 'num_val'))


def make_isic2018_task1(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """ISIC 2018 Task 1: ``ISIC2018_Task1-2_<Split>_Input/ISIC_<id>.jpg``, ``..._segmentation.png`` (0/255)."""
    root = out / 'ISIC2018'
    _prepare(root)
    counts = dict(num_train=num_train, num_val=num_val)
    image_id = 0
    for split, count in _ISIC_SPLITS:
        for _ in range(counts[count]):
            shape = (size * 3 // 4, size)
            image, mask = _binary_sample(rng, shape, (225, 180, 155), (105, 60, 40), 'speckle', (0.18, 0.3))
            _save_jpeg(image, root / f'ISIC2018_Task1-2_{split}_Input' / f'ISIC_{image_id:07d}.jpg')
            _save_png((mask * 255).astype(np.uint8),
                      root / f'ISIC2018_Task1_{split}_GroundTruth' / f'ISIC_{image_id:07d}_segmentation.png')
            image_id += 1
    return root


# ISIC 2018 Task 3 classes (CSV column order) and a look per class: lesion colour and texture.
ISIC_TASK3_CLASSES = ('MEL', 'NV', 'BCC', 'AKIEC', 'BKL', 'DF', 'VASC')
_ISIC_TASK3_LOOKS = (((40, 25, 30), 'speckle'), ((120, 75, 50), 'smooth'), ((215, 140, 150), 'stripes'),
                     ((190, 95, 70), 'diagonal'), ((150, 120, 70), 'gradient'), ((95, 70, 90), 'stripes'),
                     ((170, 30, 60), 'smooth'))


def make_isic2018_task3(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """ISIC 2018 Task 3 (HAM10000): ``ISIC2018_Task3_<Split>_Input/*.jpg`` + one-hot ground-truth CSVs.

    ``num_train`` / ``num_val`` images per class and split, twice as many NV (the majority class).
    """
    root = out / 'ISIC2018'
    _prepare(root)
    counts = dict(num_train=num_train, num_val=num_val)
    image_id = 24306  # HAM10000's first id
    for split, count in _ISIC_SPLITS:
        rows = []
        for label, name in enumerate(ISIC_TASK3_CLASSES):
            colour, texture = _ISIC_TASK3_LOOKS[label]
            for _ in range(counts[count] * (2 if name == 'NV' else 1)):
                image, _ = _binary_sample(rng, (size, size), (225, 180, 155), colour, texture, (0.25, 0.35))
                _save_jpeg(image, root / f'ISIC2018_Task3_{split}_Input' / f'ISIC_{image_id:07d}.jpg')
                rows.append(f'ISIC_{image_id:07d},' + ','.join('1.0' if c == name else '0.0' for c in ISIC_TASK3_CLASSES))
                image_id += 1
        csv_dir = root / f'ISIC2018_Task3_{split}_GroundTruth'
        csv_dir.mkdir(parents=True, exist_ok=True)
        (csv_dir / f'ISIC2018_Task3_{split}_GroundTruth.csv').write_text(
            'image,' + ','.join(ISIC_TASK3_CLASSES) + '\n' + '\n'.join(rows) + '\n')
    return root


def _land_cover_sample(rng: np.random.Generator, size: int, looks: dict, background: int,
                       layout: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """An overhead scene: ``layout`` lists (class, shape) drawn over the background class."""
    colour, texture = looks[background]
    image = _textured(rng, size, colour, texture)
    label = np.full((size, size), background, np.uint8)
    for cls, shape in layout:
        colour, texture = looks[cls]
        if shape == 'road':
            width = rng.uniform(0.06, 0.1) * size
            if rng.random() < 0.5:
                y = rng.uniform(width, size - width)
                polygon = _rectangle(size / 2, y, size / 2 + 1, width / 2)
            else:
                x = rng.uniform(width, size - width)
                polygon = _rectangle(x, size / 2, width / 2, size / 2 + 1)
        elif shape == 'box':
            rx, ry = rng.uniform(0.06, 0.16, 2) * size
            polygon = _rectangle(rng.uniform(rx, size - rx), rng.uniform(ry, size - ry), rx, ry)
        else:  # 'blob'
            polygon = _blob(rng, (size, size), rng.uniform(0.12, 0.25) * size)
        mask = _polygon_mask(size, polygon)
        image[mask] = _textured(rng, size, colour, texture)[mask]
        label[mask] = cls
    return image, label


# LoveDA mask values: 0 no-data, 1 background, 2 building, 3 road, 4 water, 5 barren, 6 forest, 7 agriculture.
_LOVEDA_LOOKS = {1: ((150, 150, 140), 'smooth'), 2: ((200, 90, 80), 'diagonal'), 3: ((90, 90, 95), 'stripes'),
                 4: ((40, 70, 150), 'gradient'), 5: ((190, 170, 120), 'speckle'), 6: ((30, 100, 40), 'speckle'),
                 7: ((150, 190, 70), 'stripes')}


def make_loveda(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """LoveDA as unzipped: ``<Train|Val>/<Urban|Rural>/{images_png,masks_png}/<id>.png`` (ids unique)."""
    root = out / 'LoveDA'
    _prepare(root)
    image_id = 0
    for split, count in (('Train', num_train), ('Val', num_val)):
        for i in range(count):
            domain = ('Urban', 'Rural')[i % 2]
            if domain == 'Urban':
                layout = [(3, 'road')] + [(2, 'box') for _ in range(rng.integers(2, 5))] + [(4, 'blob')] * int(rng.random() < 0.3)
                background = 1
            else:
                layout = [(6, 'blob'), (4, 'blob'), (5, 'box')][:int(rng.integers(1, 4))] + [(2, 'box')]
                background = 7
            image, label = _land_cover_sample(rng, size, _LOVEDA_LOOKS, background, layout)
            label[:, :int(rng.integers(0, 4))] = 0  # a no-data strip at the tile edge
            _save_png(image.astype(np.uint8), root / split / domain / 'images_png' / f'{image_id}.png')
            _save_png(label, root / split / domain / 'masks_png' / f'{image_id}.png')
            image_id += 1
    return root


# Potsdam after mmseg's converter: 0 boundary (ignored), 1 impervious surface, 2 building,
# 3 low vegetation, 4 tree, 5 car, 6 clutter.
_POTSDAM_LOOKS = {1: ((170, 170, 165), 'smooth'), 2: ((120, 60, 50), 'diagonal'), 3: ((120, 170, 90), 'speckle'),
                  4: ((30, 90, 30), 'speckle'), 5: ((30, 60, 200), 'smooth'), 6: ((200, 60, 160), 'stripes')}


def make_potsdam(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """mmseg's converted ISPRS Potsdam: ``{img_dir,ann_dir}/{train,val}/<i>_<j>_<x0>_<y0>_<x1>_<y1>.png``."""
    root = out / 'potsdam'
    _prepare(root)
    for split, count, tiles in (('train', num_train, ('2_10', '3_11')), ('val', num_val, ('5_15', '6_13'))):
        for i in range(count):
            layout = [(2, 'box'), (4, 'blob'), (3, 'blob'), (5, 'box'), (5, 'box'), (6, 'box')]
            image, label = _land_cover_sample(rng, size, _POTSDAM_LOOKS, 1, layout[:int(rng.integers(3, 7))])
            edge = (label != np.roll(label, 1, 0)) | (label != np.roll(label, 1, 1))
            label[edge] = 0  # the noBoundary labels leave object borders unlabelled
            x0, y0 = (i % 4) * size // 2, (i // 4) * size // 2
            name = f'{tiles[i % 2]}_{x0}_{y0}_{x0 + size}_{y0 + size}.png'
            _save_png(image.astype(np.uint8), root / 'img_dir' / split / name)
            _save_png(label, root / 'ann_dir' / split / name)
    return root


# DIOR objects the stand-in draws, spelled as in DIOR's horizontal-box XML files.
_DIOR_OBJECTS = {'airplane': ((235, 235, 235), 'smooth', (0.07, 0.07)), 'ship': ((60, 60, 70), 'stripes', (0.1, 0.04)),
                 'storagetank': ((210, 210, 190), 'gradient', (0.06, 0.06)),
                 'Expressway-Service-area': ((120, 110, 100), 'diagonal', (0.18, 0.13))}


def _voc_xml(file_name: str, size: int, objects: list[tuple[str, list[int]]]) -> str:
    parts = [f'<annotation>\n  <filename>{file_name}</filename>\n  <source>\n    <database>DIOR</database>\n  '
             f'</source>\n  <size>\n    <width>{size}</width>\n    <height>{size}</height>\n    <depth>3</depth>\n  '
             '</size>\n  <segmented>0</segmented>']
    for name, (x0, y0, x1, y1) in objects:
        parts.append(f'  <object>\n    <name>{name}</name>\n    <pose>Unspecified</pose>\n    <bndbox>\n      '
                     f'<xmin>{x0}</xmin>\n      <ymin>{y0}</ymin>\n      <xmax>{x1}</xmax>\n      <ymax>{y1}</ymax>\n'
                     '    </bndbox>\n  </object>')
    return '\n'.join(parts) + '\n</annotation>\n'


def make_dior(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """DIOR: ``JPEGImages-{trainval,test}/<id>.jpg``, ``Annotations/Horizontal Bounding Boxes/<id>.xml``,
    ``ImageSets/Main/{train,val,test}.txt`` (test ids follow the trainval ids, as in DIOR)."""
    root = out / 'DIOR'
    _prepare(root)
    ann_dir = root / 'Annotations' / 'Horizontal Bounding Boxes'
    ann_dir.mkdir(parents=True, exist_ok=True)
    (root / 'ImageSets' / 'Main').mkdir(parents=True, exist_ok=True)
    image_id = 1
    for split, count, folder in (('train', num_train, 'JPEGImages-trainval'), ('val', num_val, 'JPEGImages-trainval'),
                                 ('test', num_val, 'JPEGImages-test')):
        ids = []
        for _ in range(count):
            image = _textured(rng, size, (110, 120, 100), 'smooth')
            occupied = np.zeros((size, size), bool)
            objects = []
            for _ in range(int(rng.integers(2, 6))):
                name = str(rng.choice(list(_DIOR_OBJECTS)))
                colour, texture, (ax, ay) = _DIOR_OBJECTS[name]
                rx, ry = ax * size, ay * size
                cx, cy = rng.uniform(rx + 2, size - rx - 2), rng.uniform(ry + 2, size - ry - 2)
                shape = _ellipse if name in ('storagetank', 'airplane') else _rectangle
                mask = _polygon_mask(size, shape(cx, cy, rx, ry))
                if (mask & occupied).any():
                    continue
                occupied |= mask
                image[mask] = _textured(rng, size, colour, texture)[mask]
                ys, xs = np.nonzero(mask)
                objects.append((name, [int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1]))
            stem = f'{image_id:05d}'
            _save_jpeg(image, root / folder / f'{stem}.jpg')
            (ann_dir / f'{stem}.xml').write_text(_voc_xml(f'{stem}.jpg', size, objects))
            ids.append(stem)
            image_id += 1
        (root / 'ImageSets' / 'Main' / f'{split}.txt').write_text('\n'.join(ids) + '\n')
    return root


EUROSAT_CLASSES = ('AnnualCrop', 'Forest', 'HerbaceousVegetation', 'Highway', 'Industrial', 'Pasture',
                   'PermanentCrop', 'Residential', 'River', 'SeaLake')
_EUROSAT_LOOKS = (((150, 140, 90), 'stripes'), ((30, 80, 40), 'speckle'), ((110, 140, 70), 'speckle'),
                  ((120, 120, 120), 'diagonal'), ((170, 150, 150), 'diagonal'), ((100, 160, 80), 'smooth'),
                  ((120, 110, 60), 'stripes'), ((180, 130, 120), 'speckle'), ((50, 70, 110), 'gradient'),
                  ((30, 50, 110), 'smooth'))


def make_eurosat(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """EuroSAT RGB as unzipped: ``2750/<Class>/<Class>_<n>.jpg`` (64x64 in the real data)."""
    root = out / 'EuroSAT'
    _prepare(root)
    for (colour, texture), name in zip(_EUROSAT_LOOKS, EUROSAT_CLASSES):
        for n in range(1, num_train + 2 * num_val + 1):
            _save_jpeg(_textured(rng, size, colour, texture), root / '2750' / name / f'{name}_{n}.jpg')
    return root


# Sentinel-2 L1C band means in EuroSAT's file order (B01-B08, B09, B10, B11, B12, B8A), and per class a
# spectral signature: a multiplier for (visible, red edge + NIR, SWIR) bands.
_S2_MEANS = (1354, 1118, 1043, 948, 1199, 2000, 2369, 2297, 732, 12, 1819, 1119, 2594)
_S2_GROUP = (0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 2, 2, 1)
_EUROSAT_SIGNATURES = ((1.2, 0.9, 1.3), (0.6, 1.3, 0.6), (0.9, 1.2, 0.9), (1.4, 0.8, 1.3), (1.6, 0.9, 1.5),
                       (0.8, 1.4, 0.8), (1.0, 1.1, 1.1), (1.4, 1.0, 1.2), (0.7, 0.5, 0.5), (0.5, 0.2, 0.2))


def _geotiff_tags(rng: np.random.Generator) -> list[tuple]:
    """GeoTIFF tags of a 10 m UTM 32N raster (as EuroSAT's), so readers see a real GeoTIFF."""
    x0, y0 = float(rng.integers(300000, 700000)), float(rng.integers(5000000, 6000000))
    keys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32632)
    return [(33550, 'd', 3, (10.0, 10.0, 0.0), False), (33922, 'd', 6, (0.0, 0.0, 0.0, x0, y0, 0.0), False),
            (34735, 'H', len(keys), keys, False)]


def make_eurosat_ms(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """EuroSAT multispectral: 13-band uint16 GeoTIFFs in
    ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``."""
    import tifffile
    root = out / 'EuroSATallBands'
    _prepare(root)
    folder = root / 'ds/images/remote_sensing/otherDatasets/sentinel_2/tif'
    means = np.array(_S2_MEANS, np.float32)
    for signature, name in zip(_EUROSAT_SIGNATURES, EUROSAT_CLASSES):
        gain = np.array([signature[g] for g in _S2_GROUP], np.float32)
        for n in range(1, num_train + 2 * num_val + 1):
            texture = _textured(rng, size, (128, 128, 128), 'speckle')[..., 0] / 128.0  # ~1 +- texture
            bands = means[:, None, None] * gain[:, None, None] * texture[None] * rng.uniform(0.9, 1.1)
            bands += rng.normal(0, 20, bands.shape)
            path = folder / name / f'{name}_{n}.tif'
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, np.clip(bands, 0, 65535).astype(np.uint16), photometric='minisblack',
                             planarconfig='separate', metadata=None, extratags=_geotiff_tags(rng))
    return root


NWPU_RESISC45_CLASSES = (
    'airplane', 'airport', 'baseball_diamond', 'basketball_court', 'beach', 'bridge', 'chaparral', 'church',
    'circular_farmland', 'cloud', 'commercial_area', 'dense_residential', 'desert', 'forest', 'freeway', 'golf_course',
    'ground_track_field', 'harbor', 'industrial_area', 'intersection', 'island', 'lake', 'meadow', 'medium_residential',
    'mobile_home_park', 'mountain', 'overpass', 'palace', 'parking_lot', 'railway', 'railway_station',
    'rectangular_farmland', 'river', 'roundabout', 'runway', 'sea_ice', 'ship', 'snowberg', 'sparse_residential',
    'stadium', 'storage_tank', 'tennis_court', 'terrace', 'thermal_power_station', 'wetland')
_TEXTURES = ('smooth', 'stripes', 'diagonal', 'speckle', 'gradient')


def make_nwpu_resisc45(out: Path, rng: np.random.Generator, size: int, num_train: int, num_val: int) -> Path:
    """NWPU-RESISC45 as unzipped: ``NWPU-RESISC45/<class>/<class>_<nnn>.jpg`` (256x256 in the real data)."""
    root = out / 'NWPU-RESISC45'
    _prepare(root)
    for label, name in enumerate(NWPU_RESISC45_CLASSES):
        hue = 2 * math.pi * label / len(NWPU_RESISC45_CLASSES)
        colour = tuple(int(128 + 90 * math.cos(hue + k * 2 * math.pi / 3)) for k in range(3))
        for n in range(1, num_train + 2 * num_val + 1):
            _save_jpeg(_textured(rng, size, colour, _TEXTURES[label % len(_TEXTURES)]),
                       root / name / f'{name}_{n:03d}.jpg')
    return root


MAKERS = {'ade20k': make_ade20k, 'coco': make_coco, 'imagenet': make_imagenet,
          'kvasir_seg': make_kvasir_seg, 'isic2018_task1': make_isic2018_task1, 'isic2018_task3': make_isic2018_task3,
          'loveda': make_loveda, 'potsdam': make_potsdam, 'dior': make_dior, 'eurosat': make_eurosat,
          'eurosat_ms': make_eurosat_ms, 'nwpu_resisc45': make_nwpu_resisc45}
# Each task's random stream: fixed numbers, so adding a task never changes another task's bytes.
TASK_STREAMS = {'ade20k': 0, 'coco': 1, 'imagenet': 2, 'kvasir_seg': 3, 'isic2018_task1': 4, 'isic2018_task3': 5,
                'loveda': 6, 'potsdam': 7, 'dior': 8, 'eurosat': 9, 'eurosat_ms': 10, 'nwpu_resisc45': 11}
# (image size, train count, val count); ImageNet counts are per class for train, per class for val; the
# class-folder makers (eurosat, eurosat_ms, nwpu_resisc45) write train + 2 * val images per class.
DEFAULT_SIZES = {'ade20k': (128, 200, 40), 'coco': (128, 120, 30), 'imagenet': (64, 40, 10),
                 'kvasir_seg': (96, 40, 5), 'isic2018_task1': (96, 30, 6), 'isic2018_task3': (64, 8, 2),
                 'loveda': (96, 30, 6), 'potsdam': (96, 30, 6), 'dior': (128, 30, 6), 'eurosat': (64, 6, 2),
                 'eurosat_ms': (64, 6, 2), 'nwpu_resisc45': (64, 2, 4)}


def make_demo_data(out: Path, tasks: Sequence[str] = tuple(MAKERS), seed: int = 0, num_train: Optional[int] = None,
                   num_val: Optional[int] = None) -> dict[str, Path]:
    """Write the stand-ins of ``tasks`` under ``out``; returns each task's dataset root.

    ``num_train`` / ``num_val`` override the default image counts (``DEFAULT_SIZES``).
    """
    unknown = sorted(set(tasks) - set(MAKERS))
    if unknown:
        raise UnknownNameError(f'unknown demo data task(s) {unknown}; choose from {sorted(MAKERS)}')
    roots = {}
    for task in tasks:
        size, default_train, default_val = DEFAULT_SIZES[task]
        rng = np.random.default_rng([seed, TASK_STREAMS[task]])
        roots[task] = MAKERS[task](Path(out), rng, size, num_train or default_train, num_val or default_val)
    return roots
