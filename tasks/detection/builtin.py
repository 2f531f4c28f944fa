"""Detection's built-in sets: scenes of Fashion-MNIST items pasted on scikit-image photographs.

``zoo data prepare detection`` writes each split as ``<set>/<split>/annotations.json`` (COCO)
+ ``images/*.png``, read back through the COCO adapter. Items come from Fashion-MNIST (Debian
``dataset-fashion-mnist``, fetched with ``apt-get download``: the only code of this task that
fetches): train scenes from its train file, validation and test scenes from disjoint halves of
its test file.
"""
from __future__ import annotations

import colorsys
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from tasks.detection.formats import DetectionDataset, read_coco
from tasks.engine.sets import BUILTIN_SPLITS, BuiltinSet
from tasks.engine.sources import FASHION_MNIST_CLASSES, fashion_mnist
from zoo.progress import progress_bar

VERSION = "1"


@dataclass(frozen=True)
class _Recipe:
    """How one built-in set is generated."""

    size: int  # scene side in pixels
    counts: dict[str, int]  # scenes per split
    item_sides: tuple[int, int]  # range of an item's pasted side in pixels
    seed: int


_RECIPES = {
    "default": _Recipe(128, {"train": 4000, "validation": 300, "test": 500}, (24, 64), seed=0),
    "small": _Recipe(96, {"train": 600, "validation": 100, "test": 100}, (18, 48), seed=1),
}
_MAX_ITEMS = 4
_MAX_IOU = 0.1  # placements overlapping an earlier item's box more than this are redrawn
_PLACEMENT_TRIES = 30
_ITEM_THRESHOLD = 12  # Fashion-MNIST intensities at or below this are the item's black surround
# Photographs and textures shipped inside the scikit-image wheel (skimage/data/); read as files,
# never through skimage.data's fetchers, some of which download.
_BACKGROUNDS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
    "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "rocket.jpg",
)
# Disjoint regions of every background, as fractions (x0, y0, x1, y1): crops never cross splits.
_REGIONS = {"train": (0.0, 0.0, 0.6, 1.0), "validation": (0.6, 0.0, 1.0, 0.5), "test": (0.6, 0.5, 1.0, 1.0)}


def _read_prepared(folder: Path, split: str) -> DetectionDataset:
    """One split of a prepared set, through the COCO adapter."""
    dataset = read_coco(folder / split / "annotations.json", {}, "all")
    dataset.source = f"builtin:{folder.name} ({split})"
    return dataset


def _builder(name: str) -> Callable[[Path], str]:
    """``build(folder)`` of the set ``name``: its three splits of scenes, by ``_RECIPES[name]``."""
    def build(folder: Path) -> str:
        recipe = _RECIPES[name]
        with tempfile.TemporaryDirectory(prefix="zoo-fashion-") as workdir:
            fashion = fashion_mnist(Path(workdir))
        backgrounds = _load_backgrounds()
        for split_index, split in enumerate(BUILTIN_SPLITS):
            _write_scenes(folder / split, recipe, split, split_index, fashion, backgrounds)
        counts = "/".join(str(recipe.counts[split]) for split in BUILTIN_SPLITS)
        return f"{counts} scenes of {recipe.size}x{recipe.size}"

    return build


def _load_backgrounds() -> dict[str, Image.Image]:
    """The bundled scikit-image photographs and textures, as RGB PIL images."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    backgrounds = {}
    for name in _BACKGROUNDS:
        with Image.open(folder / name) as image:
            backgrounds[name] = image.convert("RGB")
    return backgrounds


def _item_pool(fashion: dict[str, tuple[np.ndarray, np.ndarray]], split: str) -> tuple[str, np.ndarray]:
    """(Fashion-MNIST part, item indices) a split draws from; the three pools are disjoint."""
    if split == "train":
        return "train", np.arange(len(fashion["train"][1]))
    half = len(fashion["test"][1]) // 2
    return "test", np.arange(half) if split == "validation" else np.arange(half, len(fashion["test"][1]))


def _write_scenes(folder: Path, recipe: _Recipe, split: str, split_index: int,
                  fashion: dict[str, tuple[np.ndarray, np.ndarray]], backgrounds: dict[str, Image.Image]) -> None:
    """Write one split's scenes as PNGs plus a COCO ``annotations.json`` (with provenance fields)."""
    rng = np.random.default_rng([recipe.seed, split_index])
    part, pool = _item_pool(fashion, split)
    items, item_labels = fashion[part]
    order = rng.permutation(pool)
    (folder / "images").mkdir(parents=True)
    names = sorted(backgrounds)
    images, annotations, used = [], [], 0
    for image_id in progress_bar(range(1, recipe.counts[split] + 1), desc=f"{split} scenes", unit="scene"):
        background = names[rng.integers(len(names))]
        scene, crop = _background_crop(backgrounds[background], _REGIONS[split], recipe.size, rng)
        placed: list[list[int]] = []
        for _ in range(rng.integers(1, _MAX_ITEMS + 1)):
            index = int(order[used % len(order)])
            used += 1
            pasted = _paste_item(scene, items[index], placed, recipe, rng)
            if pasted is None:
                continue
            box, area = pasted
            placed.append(box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(item_labels[index]) + 1,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "area": area, "iscrowd": 0,
                "source": {"fashion_mnist": part, "index": index},
            })
        file_name = f"{image_id:06d}.png"
        Image.fromarray(scene).save(folder / "images" / file_name, compress_level=1)  # 3x faster, ~4% larger
        images.append({
            "id": image_id, "file_name": file_name, "width": recipe.size, "height": recipe.size,
            "background": {"file": background, "crop": crop},
        })
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(FASHION_MNIST_CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")


def _background_crop(background: Image.Image, region: tuple[float, float, float, float], size: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """A random square crop inside ``region`` of the background, resized to (size, size, 3) uint8, and [x, y, w, h]."""
    width, height = background.size
    x0, y0, x1, y1 = int(region[0] * width), int(region[1] * height), int(region[2] * width), int(region[3] * height)
    largest = min(x1 - x0, y1 - y0)
    side = int(rng.integers(largest // 2, largest + 1))
    x, y = int(rng.integers(x0, x1 - side + 1)), int(rng.integers(y0, y1 - side + 1))
    scene = np.array(background.resize((size, size), Image.BILINEAR, box=(x, y, x + side, y + side)))
    return scene, [x, y, side, side]


def _paste_item(scene: np.ndarray, item: np.ndarray, placed: list[list[int]], recipe: _Recipe,
                rng: np.random.Generator) -> tuple[list[int], int] | None:
    """Blend one tinted item (28, 28) into ``scene`` (S, S, 3) in place at a random scale and place.

    Returns (the tight xyxy box of its pixels, its pixel count), or None when no place overlaps
    the earlier ``placed`` boxes by at most ``_MAX_IOU``.
    """
    side = rng.integers(recipe.item_sides[0], recipe.item_sides[1] + 1)
    aspect = math.sqrt(math.exp(rng.uniform(math.log(0.8), math.log(1.25))))
    w, h = (min(recipe.size, max(8, round(side * f))) for f in (aspect, 1 / aspect))
    gray = np.array(Image.fromarray(item).resize((w, h), Image.BILINEAR)).astype(np.float32)  # (h, w)
    mask = gray > _ITEM_THRESHOLD  # (h, w)
    if not mask.any():
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    for _ in range(_PLACEMENT_TRIES):
        x, y = int(rng.integers(0, recipe.size - w + 1)), int(rng.integers(0, recipe.size - h + 1))
        box = [x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1]
        if _overlaps_little(box, placed):
            break
    else:
        return None
    colour = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0)))  # (3,)
    layer = (0.3 + 0.7 * gray / 255)[..., None] * colour * 255  # (h, w, 3): the item's shading, tinted
    alpha = np.where(mask, np.clip(gray / 48, 0, 1), 0)[..., None]  # (h, w, 1): soft edges, clear surround
    under = scene[y:y + h, x:x + w].astype(np.float32)  # (h, w, 3)
    scene[y:y + h, x:x + w] = np.round(alpha * layer + (1 - alpha) * under).astype(np.uint8)
    return box, int(mask.sum())


def _overlaps_little(box: list[int], placed: list[list[int]]) -> bool:
    """True when the xyxy ``box`` overlaps each ``placed`` box by an IoU of at most ``_MAX_IOU``."""
    # float64: the same IoU values, to the bit, as exact integer areas divided in Python, so scenes do not change
    ious = box_iou(torch.tensor([box], dtype=torch.float64), torch.tensor(placed, dtype=torch.float64).view(-1, 4))
    return bool((ious <= _MAX_IOU).all())


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "default": BuiltinSet("4,000/300/500 train/validation/test 128x128 scenes: 1-4 Fashion-MNIST items on "
                          "scikit-image photos", _builder("default"), _read_prepared, VERSION),
    "small": BuiltinSet("600/100/100 train/validation/test 96x96 scenes, same recipe (fast tests and demo)",
                        _builder("small"), _read_prepared, VERSION),
}
