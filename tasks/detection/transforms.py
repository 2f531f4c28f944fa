"""From detection sample dicts to model batches: box-aware augmentation and padded collation.

Augmentation runs on the sample dicts the adapters yield (``image`` uint8 (3, H, W),
``boxes`` (N, 4) xyxy pixels, ``labels`` (N,)) with ``torchvision.transforms.v2``: the
image is wrapped as ``tv_tensors.Image`` and the boxes as ``tv_tensors.BoundingBoxes`` so
every geometric step moves the boxes with the pixels; in training ``SanitizeBoundingBoxes``
removes boxes that became degenerate together with their labels. Evaluation only resizes: it
never drops a box (the metrics score against the annotation as read anyway, see
:mod:`tasks.detection.evaluation`). The configuration is a plain, JSON-serialisable dict
(stored with a model as its preprocessing).
"""
from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

DEFAULT_CONFIG: dict[str, Any] = {
    "size": None,  # shorter side in pixels (int), or None to keep each image's own size
    "max_size": None,  # cap on the longer side after resizing (int) or None
    "scale_range": [0.75, 1.25],  # training scale jitter, as fractions of `size` (or of the image)
    "hflip": 0.5,  # probability of a horizontal flip in training
    "color_jitter": 0.3,  # brightness/contrast/saturation strength in training; 0 turns it off
    "min_box_size": 1.0,  # training: boxes narrower or shorter than this (pixels) after augmentation are removed
}


class DetectionTransform:
    """Apply a ``v2`` pipeline to a sample dict and return a sample dict of plain tensors."""

    def __init__(self, pipeline: v2.Transform, config: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.config = config

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = sample["image"]  # (3, H, W) uint8
        wrapped = dict(sample)
        wrapped["image"] = tv_tensors.Image(image)
        wrapped["boxes"] = tv_tensors.BoundingBoxes(sample["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]),
                                                    clamping_mode="hard")
        out = self.pipeline(wrapped)
        out["image"] = out["image"].as_subclass(torch.Tensor)  # (3, H', W') uint8
        out["boxes"] = out["boxes"].as_subclass(torch.Tensor).float()  # (N', 4)
        return out

    def __repr__(self) -> str:
        return f"DetectionTransform({self.pipeline})"


def build_detection_transform(config: dict[str, Any] | None, train: bool) -> DetectionTransform:
    """Build the sample-dict transform for training (``train=True``) or evaluation.

    Training: horizontal flip, scale jitter (shorter side drawn from ``size * scale_range``
    with ``RandomShortestSize``, longer side capped at ``max_size``; with ``size=None`` a zoom
    in/out that keeps the canvas, with ``RandomAffine``), colour jitter, then clamping boxes to the
    image and dropping those under ``min_box_size`` with their labels. Evaluation: resize the
    shorter side to ``size`` (identity when ``size`` is None); every box is kept, so a small
    object stays in the ground truth. Unknown config keys raise ``ValueError``.
    """
    unknown = set(config or {}) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown detection transform option(s) {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    size, max_size = cfg["size"], cfg["max_size"]
    low, high = cfg["scale_range"]
    steps: list[v2.Transform] = []
    if train:
        steps.append(v2.RandomHorizontalFlip(cfg["hflip"]))
        if size is not None:
            shorter_sides = list(range(round(size * low), round(size * high) + 1))
            steps.append(v2.RandomShortestSize(shorter_sides, max_size=max_size))
        elif (low, high) != (1.0, 1.0):
            steps.append(v2.RandomAffine(degrees=0, scale=(low, high)))
        if cfg["color_jitter"]:
            strength = cfg["color_jitter"]
            steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=strength / 10))
        steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=cfg["min_box_size"])]
    elif size is not None:
        steps.append(v2.Resize(size, max_size=max_size))
    return DetectionTransform(v2.Compose(steps or [v2.Identity()]), cfg)


def collate_detection(samples: list[dict[str, Any]], normalize_mean: list[float],
                      normalize_std: list[float]) -> dict[str, Any]:
    """Batch sample dicts of different sizes: normalise, pad bottom/right with zeros, keep a pixel mask.

    Returns ``inputs`` (B, 3, Hmax, Wmax) float, ``mask`` (B, Hmax, Wmax) bool (True = real
    pixel), ``boxes`` list of (N_i, 4) float xyxy in each unpadded image's pixels (unchanged),
    ``labels`` list of (N_i,) long, ``image_sizes`` (B, 2) long (h, w), ``image_ids`` (B,) long
    and ``paths`` (list of str).
    """
    sizes = torch.tensor([list(s["image"].shape[-2:]) for s in samples], dtype=torch.long)  # (B, 2)
    height, width = (int(v) for v in sizes.max(dim=0).values)
    mean = torch.tensor(normalize_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(normalize_std, dtype=torch.float32).view(3, 1, 1)
    inputs = torch.zeros(len(samples), 3, height, width)  # (B, 3, Hmax, Wmax)
    mask = torch.zeros(len(samples), height, width, dtype=torch.bool)  # (B, Hmax, Wmax)
    for i, sample in enumerate(samples):
        h, w = sample["image"].shape[-2:]
        inputs[i, :, :h, :w] = (sample["image"].float() / 255.0 - mean) / std
        mask[i, :h, :w] = True
    return {
        "inputs": inputs,
        "mask": mask,
        "boxes": [s["boxes"].float() for s in samples],
        "labels": [s["labels"].long() for s in samples],
        "image_sizes": sizes,
        "image_ids": torch.tensor([int(s["image_id"]) for s in samples], dtype=torch.long),
        "paths": [s["path"] for s in samples],
    }
