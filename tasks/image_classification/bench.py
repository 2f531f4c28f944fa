"""Image classification benchmark: ViT-Ti/16 and ViT-S/16 classifiers vs timm's, inference and training.

Each pair is our ``vit_tiny``/``vit_small`` backbone + classification head (class-token pooling,
1000 classes) against timm's ``vit_tiny_patch16_224``/``vit_small_patch16_224`` built with
``pretrained=False`` (same patch embedding, blocks, final norm, class-token head), on the same
random (batch, 3, 224, 224) images. A training step is forward, cross-entropy, backward and an
AdamW step, identical on both sides. One more row, without a reference, trains this task's
default model at the built-in Fashion-MNIST shapes (28x28), the speed behind the README's quality row.

Precision and inference mode are applied by the harness around each step; FLOPs are counted there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from tasks.engine.bench import maybe_compile, mode_step
from tasks.engine.sources import FASHION_MNIST_CLASSES
from tasks.engine.task import Workload
from tasks.image_classification.builtin import BUILTIN_IMAGE_STATS
from tasks.image_classification.task import vit_defaults

PAIRS = (("vit_tiny", "vit_tiny_patch16_224"), ("vit_small", "vit_small_patch16_224"))
IMAGE_SIZE, PATCH, CLASSES = 224, 16, 1000
FASHION_CLASSES = len(FASHION_MNIST_CLASSES)


@dataclass(frozen=True)
class Batches:
    """Batch sizes on one device: inference, training, and the small built-in model's training."""

    inference: int
    train: int
    builtin_train: int


def batches(device: torch.device, quick: bool) -> Batches:
    """Large batches on a GPU (busy enough to measure the kernels); small ones on a CPU, where a
    quick step must stay around a second."""
    if device.type == "cuda":
        return Batches(64, 32, 128) if quick else Batches(256, 128, 512)
    return Batches(2, 2, 32) if quick else Batches(16, 8, 128)


def classifier_workload(name: str, model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                        mode: str, batch: int, image_size: int, num_classes: int, config: str,
                        device: torch.device) -> Workload:
    """One inference or training workload on random images, rebuildable at any batch size.

    ``forward`` maps (B, 3, S, S) images to (B, classes) logits; training adds cross-entropy,
    backward and an AdamW step.
    """
    images = torch.randn(batch, 3, image_size, image_size, device=device)
    labels = torch.randint(0, num_classes, (batch,), device=device)
    step = mode_step(model, mode, lambda: F.cross_entropy(forward(images).float(), labels), lambda: forward(images),
                     fused=device.type == "cuda")

    def factory(size: int) -> Workload:
        return classifier_workload(name, model, forward, mode, size, image_size, num_classes, config, device)

    return Workload(name=name, unit="images", items=batch, step=step, model=model, mode=mode,
                    batch_size=batch, config=config, factory=factory)


def vit_pair(ours_name: str, timm_name: str, mode: str, batch: int, device: torch.device,
             compile: bool | str, image_size: int = IMAGE_SIZE) -> tuple[Workload, Workload]:
    """Our ``ours_name`` classifier vs timm's ``timm_name`` on the same images, same mode and batch."""
    ours = zoo.create_model(ours_name, "classification", num_classes=CLASSES,
                            backbone_args=dict(img_size=image_size, patch_size=PATCH)).to(device)
    theirs = timm.create_model(timm_name, pretrained=False, num_classes=CLASSES, img_size=image_size).to(device)
    our_net, their_net = maybe_compile(ours, compile), maybe_compile(theirs, compile)
    config = f"{image_size}x{image_size}, patch {PATCH}, {CLASSES} classes"
    return (classifier_workload(f"zoo {ours_name}", ours, lambda x: our_net({"inputs": x})["logits"], mode,
                                batch, image_size, CLASSES, config, device),
            classifier_workload(f"timm {timm_name}", theirs, their_net, mode, batch, image_size, CLASSES,
                                config, device))


def builtin_workload(batch: int, device: torch.device, compile: bool | str) -> Workload:
    """Training of the task's default model at Fashion-MNIST shapes (28x28, 10 classes)."""
    size = BUILTIN_IMAGE_STATS["default"]["image_size"]
    args = vit_defaults("vit_tiny", size, is_default=True)
    model = zoo.create_model("vit_tiny", "classification", num_classes=FASHION_CLASSES, backbone_args=args).to(device)
    net = maybe_compile(model, compile)
    config = f"{size}x{size}, " + ", ".join(f"{k} {v}" for k, v in args.items() if k != "img_size")
    return classifier_workload("zoo image_classification default (Fashion-MNIST)", model,
                               lambda x: net({"inputs": x})["logits"], "train", batch, size, FASHION_CLASSES,
                               config, device)


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool | str = False) -> list[tuple[Workload, Workload | None]]:
    """The task's (ours, reference) pairs on ``device``; precision is applied by the harness."""
    size = batches(device, quick)
    pairs = [vit_pair(ours_name, timm_name, mode, batch, device, compile) for ours_name, timm_name in PAIRS
             for mode, batch in (("inference", size.inference), ("train", size.train))]
    return [*pairs, (builtin_workload(size.builtin_train, device, compile), None)]
