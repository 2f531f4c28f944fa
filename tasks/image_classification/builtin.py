"""Image classification's built-in sets: written once as ImageFolders of PNGs (``train/``,
``validation/``, ``test/``) by ``zoo data prepare image_classification``, read back through the
ImageFolder adapter. The only code of this task that fetches (the Fashion-MNIST Debian package).
"""
from __future__ import annotations

import multiprocessing
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.engine.sets import BuiltinSet
from tasks.engine.sources import FASHION_MNIST_CLASSES, fashion_mnist
from tasks.image_classification.formats import ImageFiles, read_imagefolder
from zoo.progress import progress_bar

VERSION = "1"
# Arguments of transforms.default_transform_config for each built-in set (mean/std of its train split).
BUILTIN_IMAGE_STATS: dict[str, dict] = {
    "default": {"image_size": 28, "mean": [0.2862], "std": [0.3531], "grayscale_source": True},
    "digits": {"image_size": 8, "mean": [0.3049], "std": [0.3757], "grayscale_source": True},
}
# Fashion-MNIST's class names as folder names: "/" cannot be in one, hence "T-shirt_top".
FASHION_FOLDERS = [name.replace("/", "_") for name in FASHION_MNIST_CLASSES]
FASHION_VALIDATION = 5000


def _read_prepared(folder: Path, split: str) -> ImageFiles:
    """One split of a prepared set: the ImageFolder ``folder/split``."""
    return read_imagefolder(folder / split, f"builtin:{folder.name} [{split}]")


def _build_fashion(folder: Path) -> str:
    """Fashion-MNIST from the Debian package -> train/validation/test ImageFolders of PNGs."""
    with tempfile.TemporaryDirectory(prefix="zoo-fashion-") as work:
        parts = fashion_mnist(Path(work))
    (train_x, train_y), (test_x, test_y) = parts["train"], parts["test"]
    order = np.random.default_rng(0).permutation(len(train_y))
    splits = {
        "train": (train_x, train_y, np.sort(order[FASHION_VALIDATION:])),
        "validation": (train_x, train_y, np.sort(order[:FASHION_VALIDATION])),
        "test": (test_x, test_y, np.arange(len(test_y))),
    }
    for split, (images, labels, numbers) in splits.items():
        _write_imagefolder(folder / split, images[numbers], labels[numbers], FASHION_FOLDERS, numbers, processes=2)
    return f"wrote {len(train_y) + len(test_y):,} PNGs"


def _build_digits(folder: Path) -> str:
    """scikit-learn's 8x8 digits (bundled, no download) -> seeded 80/10/10 ImageFolders of PNGs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), values 0..16 -> 0..255
    order = np.random.default_rng(0).permutation(len(images))
    held = int(round(0.1 * len(images)))
    parts = {"test": order[:held], "validation": order[held:2 * held], "train": order[2 * held:]}
    for split, numbers in parts.items():
        numbers = np.sort(numbers)
        _write_imagefolder(folder / split, images[numbers], digits.target[numbers],
                           [str(d) for d in range(10)], numbers, processes=1)
    return f"wrote {len(images):,} PNGs"


def _write_imagefolder(folder: Path, images: np.ndarray, labels: np.ndarray, classes: list[str],
                       numbers: np.ndarray, processes: int) -> None:
    """Write ``images`` (N, H, W) uint8 as ``folder/<class>/<number:05d>.png`` with ``processes`` workers."""
    for name in classes:
        (folder / name).mkdir(parents=True)
    paths = [str(folder / classes[label] / f"{number:05d}.png") for label, number in zip(labels, numbers)]
    items = list(zip(paths, images))
    bar = progress_bar(total=len(items), desc=f"{folder.name} PNGs", unit="image")
    if processes == 1:
        for item in items:
            bar.update(_write_png(item))
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            for written in pool.imap_unordered(_write_png, items, chunksize=512):
                bar.update(written)
    bar.close()


def _write_png(item: tuple[str, np.ndarray]) -> int:
    """Write one (path, (H, W) uint8 image) as a PNG; returns 1 (the images written)."""
    path, image = item
    Image.fromarray(image).save(path, format="PNG", compress_level=1)  # tiny files: speed over size
    return 1


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "default": BuiltinSet("Fashion-MNIST (Debian dataset-fashion-mnist): 55,000 train / 5,000 validation / "
                          "10,000 test gray 28x28 images of 10 clothing classes", _build_fashion, _read_prepared, VERSION),
    "digits": BuiltinSet("scikit-learn's handwritten digits: 1,437 train / 180 validation / 180 test gray 8x8 images",
                         _build_digits, _read_prepared, VERSION),
}
