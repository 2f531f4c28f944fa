"""Decode a folder of small images once into memory, so an epoch is not spent decoding PNGs.

Fashion-MNIST's 55,000 training PNGs decode in seconds, but decoding them again on every
epoch would cost as much as a small model's training step. :func:`in_memory` decodes
every image of an :class:`~tasks.image_classification.formats.ImageFiles` set once (two
threads: Pillow releases the GIL while it decodes) into one uint8 array held by an
:class:`~tasks.image_classification.formats.ImageArrays`, when the images share one size and
the array stays under ``limit_bytes``. Larger or mixed-size sets stay on disk; give the
trainer ``--workers N`` to decode them in parallel instead.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tasks.image_classification.formats import ImageArrays, ImageFiles, LabelledImages

CACHE_LIMIT_BYTES = 2 << 30  # decoded RGB pixels kept in memory at most
DECODE_THREADS = 2


def in_memory(dataset: LabelledImages, limit_bytes: int = CACHE_LIMIT_BYTES) -> LabelledImages:
    """``dataset`` decoded into memory when it is a set of same-size files that fits; else itself.

    A file that fails to decode is skipped and counted exactly as ``ImageFiles`` does on
    access (its slot holds the next readable image), so caching never changes the samples.
    """
    if not isinstance(dataset, ImageFiles) or len(dataset) == 0:
        return dataset
    first = dataset[0]["image"]
    width, height = first.size
    if len(dataset) * width * height * 3 > limit_bytes:
        return dataset
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        samples = list(pool.map(dataset.__getitem__, range(len(dataset))))
    if any(sample["image"].size != (width, height) for sample in samples):
        return dataset
    images = np.stack([np.asarray(sample["image"]) for sample in samples])  # (N, H, W, 3) uint8
    labels = np.array([sample["label"] for sample in samples], dtype=np.int64)
    return ImageArrays(images, labels, dataset.classes, dataset.source, dataset.skipped)
