"""Detection benchmark workloads: our heads on ViT-S and ResNet-50 against torchvision's FCOS.

For each input size (512x512 and the built-in scenes' 128x128; quick mode: 64x64, batch 2)
and each of training (one AdamW step: forward, loss, backward, update) and inference
(forward + decoding with NMS), our ``fcos`` and ``detr`` heads (the task's default head
arguments) on ``vit_small`` (patch 16, maps at strides 16/32/64) and on ``timm/resnet50``
(maps at strides 8/16/32) are paired with ``torchvision.models.detection.fcos_resnet50_fpn``
(random weights, ``min_size = max_size`` = the input size, so it sees the same pixels) on the
same images and boxes. torchvision's model is heavier in its head (256-channel FPN to P7,
4-conv towers); ``config`` names both, and the README compares like with like.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

import zoo
from tasks.detection.task import HEAD_DEFAULTS
from tasks.engine.bench import maybe_compile, mode_step
from tasks.engine.sources import FASHION_MNIST_CLASSES
from tasks.engine.task import Workload

BOXES_PER_IMAGE = 3
BACKBONES = {"ViT-S/16": ("vit_small", True), "ResNet-50": ("timm/resnet50", False)}  # name -> (registry, is ViT)


@dataclass(frozen=True)
class Shape:
    """Input side in pixels and images per step."""

    size: int
    batch: int

    def describe(self, batch: int) -> str:
        return f"{batch}x3x{self.size}x{self.size}, {BOXES_PER_IMAGE} boxes/image, {len(FASHION_MNIST_CLASSES)} classes"


FULL = (Shape(512, 8), Shape(128, 32))
QUICK = (Shape(64, 2),)


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool = False) -> list[tuple[Workload, Workload | None]]:
    """(ours, torchvision FCOS) pairs for every size x mode x backbone x head."""
    pairs = []
    for shape in QUICK if quick else FULL:
        for mode in ("train", "inference"):
            reference = torchvision_fcos(shape, mode, device, compile, shape.batch)
            pairs += [(ours(shape, mode, backbone, head, device, compile, shape.batch), reference)
                      for backbone in BACKBONES for head in ("fcos", "detr")]
    return pairs


def _images(shape: Shape, batch: int, device: torch.device
            ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Seeded random images (B, 3, S, S) and per image (BOXES_PER_IMAGE, 4) xyxy pixel boxes and labels."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, shape.size, shape.size, generator=generator)
    corners = torch.rand(batch, BOXES_PER_IMAGE, 2, generator=generator) * shape.size * 0.6  # (B, K, 2)
    sides = (0.15 + 0.25 * torch.rand(batch, BOXES_PER_IMAGE, 2, generator=generator)) * shape.size
    boxes = torch.cat([corners, corners + sides], dim=2)  # (B, K, 4)
    labels = torch.randint(len(FASHION_MNIST_CLASSES), (batch, BOXES_PER_IMAGE), generator=generator)
    return images.to(device), [b.to(device) for b in boxes], [l.to(device) for l in labels]


def ours(shape: Shape, mode: str, backbone: str, head: str, device: torch.device, compile: bool,
         batch: int) -> Workload:
    """Our ``head`` on ``backbone``: one training step, or forward + decode, on ``batch`` images."""
    registry_name, is_vit = BACKBONES[backbone]
    backbone_args = dict(img_size=shape.size, patch_size=16) if is_vit else {}
    model = zoo.create_model(registry_name, head, backbone_args=backbone_args, num_classes=len(FASHION_MNIST_CLASSES),
                             **HEAD_DEFAULTS.get(head, {})).to(device)
    images, boxes, labels = _images(shape, batch, device)
    data = {"inputs": images, "mask": torch.ones(batch, shape.size, shape.size, dtype=torch.bool, device=device),
            "boxes": boxes, "labels": labels,
            "image_sizes": torch.tensor([[shape.size, shape.size]] * batch, device=device)}
    net = maybe_compile(model, compile)
    step = mode_step(model, mode, lambda: model.loss(net(data), data)["loss"],
                     lambda: model.decode(net(data), batch=data))
    return Workload(f"detection {mode} {shape.size}px ({head} on {backbone})", "images", batch, step, model, mode,
                    batch, f"{shape.describe(batch)}; {head} {HEAD_DEFAULTS.get(head, {})}",
                    functools.partial(ours, shape, mode, backbone, head, device, compile))


def torchvision_fcos(shape: Shape, mode: str, device: torch.device, compile: bool, batch: int) -> Workload:
    """torchvision ``fcos_resnet50_fpn`` (random weights) on the same images and boxes."""
    from torchvision.models.detection import fcos_resnet50_fpn

    torch.manual_seed(0)
    model = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=len(FASHION_MNIST_CLASSES) + 1,
                              min_size=shape.size, max_size=shape.size).to(device)
    images, boxes, labels = _images(shape, batch, device)
    image_list = list(images)
    targets = [{"boxes": b, "labels": l + 1} for b, l in zip(boxes, labels)]
    net = maybe_compile(model, compile)
    step = mode_step(model, mode, lambda: sum(net(image_list, targets).values()), lambda: net(image_list))
    return Workload(f"detection {mode} {shape.size}px (torchvision fcos_resnet50_fpn)", "images", batch, step, model,
                    mode, batch, f"{shape.describe(batch)}; torchvision FCOS (FPN 256, P3-P7, 4-conv towers)",
                    functools.partial(torchvision_fcos, shape, mode, device, compile))
