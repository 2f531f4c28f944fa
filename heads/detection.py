"""What both detection heads share: the backbone's feature pyramid, pixel masks on maps, post-processing.

A detection head reads ``Features.maps`` (finest first). Which maps exist, their strides and
channels come from the backbone: a ``timm/<name>`` backbone describes them in its
``feature_info``; our ViT makes ``pyramid_levels`` maps of ``dim`` channels at strides
``patch_size * 2**i``. A head picks the maps whose stride it wants (``strides``; by default
the finest three with strides 8 to 64) when it is built, so the saved head arguments fully
describe it.

Decoding returns, per image, a dict of tensors ``boxes`` (N, 4) xyxy in the pixels of the
image as fed (unpadded), ``scores`` (N,) and ``labels`` (N,) long, best first.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from heads.base import Head
from zoo.features import Features

DEFAULT_STRIDE_RANGE = (8, 64)
DEFAULT_LEVELS = 3


def pyramid_spec(backbone: nn.Module) -> list[tuple[int, int]]:
    """(stride, channels) of every map ``backbone`` returns in ``Features.maps``, finest first."""
    info = getattr(getattr(backbone, "body", None), "feature_info", None)
    if info is not None:  # timm features_only
        return list(zip(info.reduction(), info.channels()))
    cfg = getattr(backbone, "cfg", None)
    if cfg is not None and hasattr(cfg, "patch_size") and hasattr(cfg, "pyramid_levels"):  # our ViT
        return [(cfg.patch_size * 2**i, backbone.dim) for i in range(cfg.pyramid_levels)]
    raise ValueError(f"{type(backbone).__name__} does not describe its feature maps (timm feature_info or a "
                     f"ViT config with patch_size and pyramid_levels); detection heads need a feature pyramid")


def select_levels(spec: Sequence[tuple[int, int]], strides: Sequence[int] | None) -> list[int]:
    """Indices into ``spec`` of the maps with the given ``strides`` (default: the finest three in 8..64)."""
    available = [stride for stride, _ in spec]
    if strides is None:
        low, high = DEFAULT_STRIDE_RANGE
        chosen = [i for i, stride in enumerate(available) if low <= stride <= high][:DEFAULT_LEVELS]
        if not chosen:
            raise ValueError(f"the backbone's maps have strides {available}; none in {low}..{high}: pass strides=[...]")
        return chosen
    missing = [s for s in strides if s not in available]
    if missing:
        raise ValueError(f"strides {missing} are not among the backbone's map strides {available}")
    return [available.index(s) for s in strides]


def mask_on_map(mask: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor | None:
    """A pixel mask (B, H, W) bool downsampled to a map of ``size`` (h, w): a cell is real if its first pixel is."""
    if mask is None:
        return None
    return F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5  # (B, h, w)


def grid_points(sizes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points of every level, flattened finest first: centres (N, 2) xy pixels, strides (N,), levels (N,)."""
    centres, point_strides, levels = [], [], []
    for level, ((h, w), s) in enumerate(zip(sizes, strides)):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        centres.append((torch.stack([xs.flatten(), ys.flatten()], dim=1).float() + 0.5) * s)  # (h*w, 2)
        point_strides.append(torch.full((h * w,), float(s), device=device))
        levels.append(torch.full((h * w,), level, device=device, dtype=torch.long))
    return torch.cat(centres), torch.cat(point_strides), torch.cat(levels)


def postprocess(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, image_size: Sequence[int], *,
                score_threshold: float, max_detections: int, nms_iou: float | None,
                class_agnostic: bool = False) -> dict[str, torch.Tensor]:
    """One image's candidates -> clipped, thresholded, NMS'd detections, best first.

    boxes (N, 4) xyxy pixels, scores (N,), labels (N,); ``image_size`` (h, w); ``nms_iou``
    None skips NMS (set prediction needs none). NMS is per class (what COCO AP rewards)
    unless ``class_agnostic`` (one label per object, for people).
    """
    height, width = (float(v) for v in image_size)
    keep = scores > score_threshold
    boxes, scores, labels = boxes[keep].float(), scores[keep].float(), labels[keep]
    boxes = torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                         boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1)  # (N, 4)
    if nms_iou is not None:
        order = batched_nms(boxes, scores, torch.zeros_like(labels) if class_agnostic else labels, nms_iou)
    else:
        order = scores.argsort(descending=True)
    order = order[:max_detections]
    return {"boxes": boxes[order], "scores": scores[order], "labels": labels[order]}


class DetectionHead(Head):
    """Base of the detection heads: picks its maps from the pyramid and keeps class names."""

    accepts = ("image",)

    def __init__(self, backbone: nn.Module, num_classes: int, strides: Sequence[int] | None,
                 labels: Sequence[str] | None) -> None:
        super().__init__()
        self.check_backbone(backbone)       # before the pyramid, so a text or audio backbone is refused by modality
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} label names for {num_classes} classes")
        self.num_classes = num_classes
        self.labels = list(labels) if labels else [str(i) for i in range(num_classes)]
        spec = pyramid_spec(backbone)
        self.level_indices = select_levels(spec, strides)
        self.strides = [spec[i][0] for i in self.level_indices]
        self.in_channels = [spec[i][1] for i in self.level_indices]

    def levels(self, features: Features) -> list[torch.Tensor]:
        """The chosen maps (B, C_l, h_l, w_l), finest first."""
        if len(features.maps) < max(self.level_indices) + 1:
            raise ValueError(f"the backbone returned {len(features.maps)} maps; this head reads maps "
                             f"{self.level_indices} (strides {self.strides})")
        return [features.maps[i] for i in self.level_indices]

    def decode(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any] | None = None, *,
               score_threshold: float = 0.05, max_detections: int = 100,
               nms_iou: float | None = 0.6, class_agnostic: bool = False, **options: Any
               ) -> list[dict[str, torch.Tensor]]:
        """Per image: ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` (N,), best first."""
        raise NotImplementedError


def image_sizes(batch: dict[str, Any]) -> torch.Tensor:
    """(B, 2) long (h, w) of each unpadded image: ``batch["image_sizes"]``, else from the pixel mask or input."""
    if batch.get("image_sizes") is not None:
        return batch["image_sizes"].to(batch["inputs"].device)
    inputs, mask = batch["inputs"], batch.get("mask")
    if mask is not None:
        return torch.stack([mask.any(dim=2).sum(dim=1), mask.any(dim=1).sum(dim=1)], dim=1)  # (B, 2)
    return torch.tensor(inputs.shape[-2:], device=inputs.device).expand(inputs.shape[0], 2)
