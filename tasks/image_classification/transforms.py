"""Image preprocessing for classification, built from a JSON-serialisable config.

The config dict is stored in a checkpoint's ``config.json``, so ``predict`` rebuilds the
evaluation pipeline exactly as training used it. Train: (grayscale) -> RandomResizedCrop ->
horizontal flip -> TrivialAugmentWide | RandAugment | nothing -> float -> normalise.
Eval: (grayscale) -> Resize(image_size / crop_pct) -> CenterCrop(image_size) -> float ->
normalise. Batch-level MixUp / CutMix are separate (:func:`mixup_cutmix`) because they mix
samples and labels, so they run on collated batches.
"""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import InterpolationMode

from tasks.engine.images import to_rgb  # noqa: F401  (re-exported: the task and its tests import it from here)
from zoo.backbones.vision import IMAGENET_MEAN, IMAGENET_STD

SMALL_IMAGE = 64  # at or below this size, crops are mild and evaluation does not crop
AUGMENTS = ("trivial", "rand", "none")
CONFIG_KEYS = frozenset({
    "image_size", "mean", "std", "grayscale_source", "interpolation", "crop_pct", "scale", "ratio",
    "hflip", "augment", "rand_num_ops", "rand_magnitude", "mixup_alpha", "cutmix_alpha",
})


def default_transform_config(image_size: int, mean: tuple[float, ...] | list[float] = IMAGENET_MEAN,
                             std: tuple[float, ...] | list[float] = IMAGENET_STD,
                             grayscale_source: bool = False) -> dict:
    """Sensible preprocessing for square inputs of ``image_size`` pixels, as a JSON-ready dict.

    ``mean``/``std`` have 1 or 3 values (one value is used for all three channels).
    ``grayscale_source=True`` (Fashion-MNIST, digits) makes both pipelines convert every image
    to gray first, so a colour photo given to ``predict`` looks like the training data.
    Small images (<= 64 px) get mild crops (scale 0.7-1) and no evaluation crop; large ones
    get the ImageNet recipe (scale 0.08-1, bicubic, crop_pct 0.875).
    """
    small = image_size <= SMALL_IMAGE
    return {
        "image_size": int(image_size),
        "mean": _three(mean, "mean"),
        "std": _three(std, "std"),
        "grayscale_source": bool(grayscale_source),
        "interpolation": "bilinear" if small else "bicubic",
        "crop_pct": 1.0 if small else 0.875,
        "scale": [0.7, 1.0] if small else [0.08, 1.0],
        "ratio": [0.9, 1.0 / 0.9] if small else [0.75, 4.0 / 3.0],
        "hflip": 0.5,
        "augment": "trivial",
        "rand_num_ops": 2,
        "rand_magnitude": 9,
        "mixup_alpha": 0.0,
        "cutmix_alpha": 0.0,
    }


def build_transform(config: dict, train: bool) -> Callable[[object], torch.Tensor]:
    """The train or eval pipeline for ``config``: PIL image (any mode) or (C, H, W) uint8 tensor -> (3, S, S) float32, normalised.

    Raises ``ValueError`` naming the field when the config is incomplete or invalid.
    """
    _check(config)
    size = config["image_size"]
    interpolation = InterpolationMode(config["interpolation"])
    steps: list = [v2.Lambda(to_rgb, Image.Image), v2.ToImage(), v2.RGB()]  # (3, H, W) uint8
    if config["grayscale_source"]:
        steps.append(v2.Grayscale(num_output_channels=3))
    if train:
        steps.append(v2.RandomResizedCrop(size, scale=tuple(config["scale"]), ratio=tuple(config["ratio"]),
                                          interpolation=interpolation, antialias=True))
        if config["hflip"] > 0:
            steps.append(v2.RandomHorizontalFlip(p=config["hflip"]))
        if config["augment"] == "trivial":
            steps.append(v2.TrivialAugmentWide(interpolation=interpolation))
        elif config["augment"] == "rand":
            steps.append(v2.RandAugment(num_ops=config["rand_num_ops"], magnitude=config["rand_magnitude"],
                                        interpolation=interpolation))
    else:
        resize = int(size / config["crop_pct"])  # shorter side before the centre crop
        steps += [v2.Resize(resize, interpolation=interpolation, antialias=True), v2.CenterCrop(size)]
    steps += [
        v2.ToDtype(torch.float32, scale=True),  # (3, S, S) in [0, 1]
        v2.Normalize(mean=config["mean"], std=config["std"]),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


def mixup_cutmix(config: dict, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], tuple] | None:
    """Batch-level MixUp and/or CutMix from ``config`` (``mixup_alpha``, ``cutmix_alpha``; 0 = off).

    Returns ``None`` when both are off, else ``fn(images (B,3,H,W), labels (B,) long) ->
    (images (B,3,H,W), soft labels (B,num_classes) float)``; with both on, each batch uses one of
    the two at random (the timm / torchvision reference recipe). The loss must accept soft labels.
    """
    _check(config)
    mixers = []
    if config["mixup_alpha"] > 0:
        mixers.append(v2.MixUp(alpha=config["mixup_alpha"], num_classes=num_classes))
    if config["cutmix_alpha"] > 0:
        mixers.append(v2.CutMix(alpha=config["cutmix_alpha"], num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


def _three(values: tuple[float, ...] | list[float], name: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"transform config: {name} needs 1 or 3 values, got {values}")
    return values


def _check(config: dict) -> None:
    missing = sorted(CONFIG_KEYS - config.keys())
    unknown = sorted(config.keys() - CONFIG_KEYS)
    if missing or unknown:
        raise ValueError(f"transform config: missing fields {missing}, unknown fields {unknown}")
    if config["augment"] not in AUGMENTS:
        raise ValueError(f"transform config: augment must be one of {AUGMENTS}, got {config['augment']!r}")
    if not 0.0 < config["crop_pct"] <= 1.0:
        raise ValueError(f"transform config: crop_pct must be in (0, 1], got {config['crop_pct']}")
    if not 0.0 <= config["hflip"] <= 1.0:
        raise ValueError(f"transform config: hflip is a probability in [0, 1], got {config['hflip']}")
    for key in ("mean", "std"):
        if len(config[key]) != 3:
            raise ValueError(f"transform config: {key} needs 3 values, got {config[key]}")
    try:
        InterpolationMode(config["interpolation"])
    except ValueError:
        raise ValueError(f"transform config: unknown interpolation {config['interpolation']!r}") from None
