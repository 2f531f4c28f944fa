"""Raw sources that more than one task's built-in sets are made of (read only while preparing).

- Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (image classification, and the
  items pasted into the detection scenes), read by torchvision's MNIST-format readers.
- Jane Austen's six novels from the Debian package ``r-cran-janeaustenr`` (text generation, and
  the sentences the speech task synthesizes), read from R's lazy-load database without R.
"""
from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tasks.engine.data import debian_package_root
from tasks.engine.rdata import read_r_lazyload

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
_FASHION_MNIST_DIR = Path("usr/share/datasets/fashion-mnist")
_FASHION_MNIST_PARTS = {"train": "train", "test": "t10k"}     # our part name -> the files' prefix

AUSTEN_PACKAGE = "r-cran-janeaustenr"
_AUSTEN_INDEX = Path("usr/lib/R/site-library/janeaustenr/data/Rdata.rdx")


def fashion_mnist(workdir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train" | "test": (images uint8 (N, 28, 28), labels int64 (N,))}`` of the Debian package.

    The package (fetched into ``workdir`` with ``apt-get download`` unless installed) ships
    gzipped IDX files; they are unpacked into ``workdir`` and read by torchvision.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    folder = debian_package_root(FASHION_MNIST_PACKAGE, workdir) / _FASHION_MNIST_DIR
    parts = {}
    for part, prefix in _FASHION_MNIST_PARTS.items():
        images = read_image_file(str(_gunzipped(folder / f"{prefix}-images-idx3-ubyte.gz", workdir)))
        labels = read_label_file(str(_gunzipped(folder / f"{prefix}-labels-idx1-ubyte.gz", workdir)))
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {len(images)} {part} images but {len(labels)} labels")
        parts[part] = (images.numpy(), labels.numpy())
    return parts


def _gunzipped(path: Path, workdir: Path) -> Path:
    """``path`` (a ``.gz`` file) unpacked into ``workdir``; a missing file raises naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the Debian package {FASHION_MNIST_PACKAGE}")
    target = workdir / path.stem
    with gzip.open(path, "rb") as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target


def austen_novels() -> dict[str, list[str]]:
    """Each novel's lines, by the package's object name (``"emma"``, ``"prideprejudice"``...)."""
    with tempfile.TemporaryDirectory(prefix="zoo-austen-") as tmp:
        index = debian_package_root(AUSTEN_PACKAGE, Path(tmp)) / _AUSTEN_INDEX
        if not index.is_file():
            raise FileNotFoundError(f"{index}: missing from the Debian package {AUSTEN_PACKAGE}")
        return {name: lines for name, lines in read_r_lazyload(index).items() if isinstance(lines, list)}
