"""Make small, deterministic synthetic stand-ins of ADE20K, COCO and ImageNet in their real layouts.

    python tools/make_demo_data.py [--out data/demo] [--tasks ade20k coco imagenet] [--seed 0]

Writes ``<out>/ade/ADEChallengeData2016``, ``<out>/coco`` and ``<out>/imagenet`` laid out exactly as
the real datasets (so the standard configs run on them with ``--data-root``). Objects are drawn with
class-specific colour, shape and texture plus noise, so a short schedule beats chance clearly; the
same seed gives the same bytes. A folder that exists and was not made by this tool is never touched.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

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
        raise FileExistsError(f'{folder} exists and holds data not made by make_demo_data.py; '
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


MAKERS = {'ade20k': make_ade20k, 'coco': make_coco, 'imagenet': make_imagenet}
# (image size, train count, val count); ImageNet counts are per class for train, per class for val.
DEFAULT_SIZES = {'ade20k': (128, 200, 40), 'coco': (128, 120, 30), 'imagenet': (64, 40, 10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('data/demo'), help='root folder (default data/demo)')
    parser.add_argument('--tasks', nargs='+', choices=sorted(MAKERS), default=sorted(MAKERS))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, help='override the number of training images')
    parser.add_argument('--num-val', type=int, help='override the number of validation images')
    args = parser.parse_args()
    for task in args.tasks:
        size, num_train, num_val = DEFAULT_SIZES[task]
        rng = np.random.default_rng([args.seed, sorted(MAKERS).index(task)])
        root = MAKERS[task](args.out, rng, size, args.num_train or num_train, args.num_val or num_val)
        print(f'{task}: {root}')


if __name__ == '__main__':
    main()
