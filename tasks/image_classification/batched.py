"""The training pipeline of :mod:`transforms` for a batch of same-size images in a few tensor operations.

Per-image ``transforms.v2`` calls cost about a sixth of a training step on small images (8x8 digits,
batch 128, one CPU thread), nearly all of it call overhead. When the config asks for no per-image
policy (``augment`` "none", the built-in sets' default), :func:`batched_train_transform` does the same
steps on the stacked batch: grayscale, random resized crop and horizontal flip as one affine
``grid_sample`` per batch (crop boxes drawn as torchvision's ``RandomResizedCrop`` draws them, ten
tries then the centre fallback), then scaling and normalisation. Resampling is bilinear without
antialiasing, so crops much larger than ``image_size`` alias where torchvision would blur.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

ATTEMPTS = 10  # crop boxes tried per image before the centre fallback, as torchvision


def batched_train_transform(config: dict) -> Callable[[Sequence[Image.Image]], torch.Tensor] | None:
    """``fn(same-size RGB PIL images) -> (B, 3, S, S) float`` normalised, or None when ``config`` asks for
    a per-image policy (TrivialAugment, RandAugment). ``config`` is a checked transform config."""
    if config["augment"] != "none":
        return None
    size, scale, ratio, hflip = config["image_size"], config["scale"], config["ratio"], config["hflip"]
    mean = torch.tensor(config["mean"])[:, None, None]  # (3, 1, 1)
    std = torch.tensor(config["std"])[:, None, None]

    def transform(images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images])).permute(0, 3, 1, 2)  # (B, 3, H, W)
        if config["grayscale_source"]:
            pixels = TF.rgb_to_grayscale(pixels, num_output_channels=3)
        boxes = crop_boxes(pixels.shape[0], pixels.shape[2], pixels.shape[3], scale, ratio)  # (B, 4)
        flips = torch.rand(pixels.shape[0]) < hflip  # (B,)
        out = resized_crops(pixels.float() / 255.0, boxes, flips, size)  # (B, 3, S, S) in [0, 1]
        return (out - mean) / std

    return transform


def crop_boxes(batch: int, height: int, width: int, scale: Sequence[float], ratio: Sequence[float]) -> torch.Tensor:
    """(B, 4) long boxes (top, left, h, w) drawn as ``v2.RandomResizedCrop``: an area fraction in ``scale``
    and a log-uniform aspect ratio in ``ratio``, the first of :data:`ATTEMPTS` tries that fits; else the
    whole image cut to the nearest allowed ratio, centred."""
    area = height * width
    fractions = torch.empty(batch, ATTEMPTS).uniform_(scale[0], scale[1])
    aspects = torch.exp(torch.empty(batch, ATTEMPTS).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    widths = torch.round(torch.sqrt(area * fractions * aspects)).long()  # (B, A)
    heights = torch.round(torch.sqrt(area * fractions / aspects)).long()
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first = fits.float().argmax(dim=1, keepdim=True)  # (B, 1): the first try that fits (0 when none does)
    w, h = widths.gather(1, first)[:, 0], heights.gather(1, first)[:, 0]  # (B,)
    top = (torch.rand(batch) * (height - h + 1)).long()  # uniform in 0..H-h (rows with no fit: replaced below)
    left = (torch.rand(batch) * (width - w + 1)).long()
    fallback = _centre_box(height, width, ratio)
    boxes = torch.stack([top, left, h, w], dim=1)  # (B, 4)
    return torch.where(fits.any(dim=1, keepdim=True), boxes, torch.tensor(fallback)[None])


def _centre_box(height: int, width: int, ratio: Sequence[float]) -> list[int]:
    """torchvision's fallback box: the whole image, cut to the closest allowed aspect ratio, centred."""
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, round(width / min(ratio))
    elif aspect > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return [(height - h) // 2, (width - w) // 2, h, w]


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's ``boxes`` row (top, left, h, w) resized to ``size`` x ``size`` (bilinear), mirrored where
    ``flips``: images (B, C, H, W) float -> (B, C, S, S)."""
    batch, _, height, width = images.shape
    top, left, h, w = boxes.to(images.dtype).unbind(dim=1)  # (B,) each
    sign = 1.0 - 2.0 * flips.to(images.dtype)
    theta = torch.zeros(batch, 2, 3, dtype=images.dtype)
    # output coordinate u in [-1, 1] samples input pixel left + (u + 1) / 2 * w, in grid_sample's [-1, 1] units
    theta[:, 0, 0], theta[:, 0, 2] = sign * w / width, (2 * left + w) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = h / height, (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [batch, images.shape[1], size, size], align_corners=False)  # (B, S, S, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
