"""FCOS: a dense, anchor-free detection head over the backbone's feature pyramid (Tian et al. 2019).

Each chosen map gets a 1x1 lateral projection to ``dim`` channels; with ``fpn`` the coarser
levels are added top-down (nearest upsampling) and smoothed by a 3x3 convolution, as in an
FPN. Two towers of ``tower_depth`` (3x3 conv, GroupNorm, ReLU) layers, shared by all levels,
feed the class logits (sigmoid per class) and the box distances with centerness.

Every map cell is a point at ``((j + 0.5) * s, (i + 0.5) * s)`` in input pixels (stride ``s``).
A point is positive for the smallest ground-truth box that holds it within ``center_radius *
s`` of the box centre and whose largest distance to the box sides lies in its level's range
(``4 s`` to ``8 s``; the finest level from 0, the coarsest up to infinity). Boxes are the
distances (left, top, right, bottom) ``= relu(scale_l * conv) * s`` (FCOS v2's normalised
regression). Losses: sigmoid focal loss on classes over all real points, GIoU on positives
weighted by the centerness target, BCE on centerness; each divided by the number of
positives (at least 1), so images without objects give finite losses and gradients.
Points on padding (the pixel mask) are left out of the loss and of the detections.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from heads.base import SoftOutputs
from heads.detection import DetectionHead, grid_points, image_sizes, mask_on_map, postprocess
from zoo.features import Features
from zoo.registry import HEADS

PRIOR_PROBABILITY = 0.01  # initial foreground probability of the class logits (RetinaNet)


def _tower(dim: int, depth: int, groups: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(dim, dim, 3, padding=1), nn.GroupNorm(groups, dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def distances_to_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Points (..., 2) and distances (..., 4) left/top/right/bottom -> boxes (..., 4) xyxy."""
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1)


class FCOSHead(DetectionHead):
    """Lateral projections (+ FPN) -> shared class and box towers -> per-point logits, distances, centerness."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, dim: int = 128, tower_depth: int = 2,
                 fpn: bool = True, strides: Sequence[int] | None = None, center_radius: float = 1.5,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0, box_weight: float = 1.0,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__(backbone, num_classes, strides, labels)
        self.center_radius, self.focal_alpha, self.focal_gamma = center_radius, focal_alpha, focal_gamma
        self.box_weight = box_weight
        groups = math.gcd(32, dim)
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in self.in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in self.in_channels) if fpn else None
        self.cls_tower, self.box_tower = _tower(dim, tower_depth, groups), _tower(dim, tower_depth, groups)
        self.cls_logits = nn.Conv2d(dim, num_classes, 3, padding=1)
        self.box_distances = nn.Conv2d(dim, 4, 3, padding=1)
        self.centerness = nn.Conv2d(dim, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(self.strides)))
        for module in [self.cls_tower, self.box_tower, self.cls_logits, self.box_distances, self.centerness]:
            for conv in module.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=0.01)
                    nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def pyramid(self, features: Features) -> list[torch.Tensor]:
        """The chosen maps projected to (B, dim, h_l, w_l), with the top-down FPN pathway when on."""
        maps = [lateral(m) for lateral, m in zip(self.lateral, self.levels(features))]
        if self.smooth is None:
            return maps
        for i in range(len(maps) - 2, -1, -1):
            maps[i] = maps[i] + F.interpolate(maps[i + 1], size=maps[i].shape[-2:], mode="nearest")
        return [smooth(m) for smooth, m in zip(self.smooth, maps)]

    def forward(self, features: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``logits`` (B, N, C), ``distances`` (B, N, 4) pixels, ``centerness`` (B, N) logits over all points N;
        ``points`` (N, 2), ``point_strides`` (N,), ``levels`` (N,), ``valid`` (B, N) real points, ``image_sizes``."""
        logits, distances, centerness, valid = [], [], [], []
        maps = self.pyramid(features)
        mask = batch.get("mask")
        for level, (x, stride) in enumerate(zip(maps, self.strides)):
            cls_features, box_features = self.cls_tower(x), self.box_tower(x)
            logits.append(self.cls_logits(cls_features).flatten(2).transpose(1, 2))  # (B, h*w, C)
            ltrb = F.relu(self.scales[level] * self.box_distances(box_features)) * stride  # (B, 4, h, w)
            distances.append(ltrb.flatten(2).transpose(1, 2))  # (B, h*w, 4)
            centerness.append(self.centerness(box_features).flatten(1))  # (B, h*w)
            on_map = mask_on_map(mask, tuple(x.shape[-2:]))
            valid.append(torch.ones_like(centerness[-1], dtype=torch.bool) if on_map is None else on_map.flatten(1))
        points, point_strides, levels = grid_points([tuple(m.shape[-2:]) for m in maps], self.strides, maps[0].device)
        return {"logits": torch.cat(logits, 1), "distances": torch.cat(distances, 1),
                "centerness": torch.cat(centerness, 1), "valid": torch.cat(valid, 1), "points": points,
                "point_strides": point_strides, "levels": levels, "image_sizes": image_sizes(batch)}

    @torch.no_grad()
    def targets(self, outputs: dict[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's assignment: (class per point (N,) with ``num_classes`` = background, its box (N, 4))."""
        points, point_strides, levels = outputs["points"], outputs["point_strides"], outputs["levels"]
        count = points.shape[0]
        if boxes.numel() == 0:
            return labels.new_full((count,), self.num_classes), points.new_zeros(count, 4)
        x, y = points[:, 0:1], points[:, 1:2]  # (N, 1)
        ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=2)  # (N, M, 4)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (M, 2)
        radius = point_strides[:, None] * self.center_radius  # (N, 1)
        near = ((x - centre[:, 0]).abs() < radius) & ((y - centre[:, 1]).abs() < radius)  # (N, M)
        reach = ltrb.max(dim=2).values  # (N, M)
        low = torch.where(levels == 0, 0.0, point_strides * 4)[:, None]
        high = torch.where(levels == len(self.strides) - 1, math.inf, point_strides * 8)[:, None]
        candidate = (ltrb.min(dim=2).values > 0) & near & (reach >= low) & (reach <= high)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(count, -1)  # (N, M)
        area = torch.where(candidate, area, math.inf)
        best_area, best = area.min(dim=1)  # (N,)
        classes = torch.where(torch.isfinite(best_area), labels[best], self.num_classes)
        return classes, boxes[best]

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``loss`` = ``cls`` + ``box`` + ``ctr`` (each part already weighted)."""
        classes, boxes = zip(*(self.targets(outputs, b.to(outputs["points"].device), l.to(outputs["points"].device))
                               for b, l in zip(batch["boxes"], batch["labels"])))
        classes, boxes = torch.stack(classes), torch.stack(boxes)  # (B, N), (B, N, 4)
        valid = outputs["valid"]
        positive = (classes < self.num_classes) & valid  # (B, N)
        count = positive.sum().clamp(min=1).float()
        logits = outputs["logits"].float()
        one_hot = F.one_hot(classes, self.num_classes + 1)[..., : self.num_classes].to(logits.dtype)  # (B, N, C)
        focal = sigmoid_focal_loss(logits, one_hot, self.focal_alpha, self.focal_gamma, reduction="none")
        cls = (focal.sum(dim=2) * valid).sum() / count
        points = outputs["points"][None].expand_as(outputs["distances"][..., :2])[positive]  # (P, 2)
        predicted = distances_to_boxes(points, outputs["distances"][positive].float())  # (P, 4)
        target = boxes[positive]  # (P, 4)
        x, y = points[:, 0], points[:, 1]
        ltrb = torch.stack([x - target[:, 0], y - target[:, 1], target[:, 2] - x, target[:, 3] - y], dim=1)  # (P, 4)
        centre_target = torch.sqrt((ltrb[:, 0::2].min(1).values / ltrb[:, 0::2].max(1).values)
                                   * (ltrb[:, 1::2].min(1).values / ltrb[:, 1::2].max(1).values))  # (P,)
        giou = generalized_box_iou_loss(predicted, target, reduction="none")  # (P,)
        box = self.box_weight * (giou * centre_target).sum() / centre_target.sum().clamp(min=1e-6)
        ctr = F.binary_cross_entropy_with_logits(outputs["centerness"][positive].float(), centre_target,
                                                 reduction="sum") / count
        return {"loss": cls + box + ctr, "cls": cls, "box": box, "ctr": ctr}

    def soft_outputs(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> SoftOutputs:
        """Per real point its sigmoid class logits (N, C) and box distances (N, 4) in units of its stride."""
        valid = outputs["valid"]
        distances = outputs["distances"] / outputs["point_strides"][None, :, None]  # (B, N, 4)
        return SoftOutputs(outputs["logits"][valid], binary=True, boxes=distances[valid])

    @torch.no_grad()
    def decode(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any] | None = None, *,
               score_threshold: float = 0.05, max_detections: int = 100, nms_iou: float | None = 0.6,
               class_agnostic: bool = False, candidates: int = 1000, **options: Any) -> list[dict[str, torch.Tensor]]:
        """Score ``sqrt(p_class * p_centerness)``; the best ``candidates`` above the threshold go to NMS."""
        sizes = image_sizes(batch) if batch is not None else outputs["image_sizes"]
        scores = (outputs["logits"].float().sigmoid() * outputs["centerness"].float().sigmoid()[..., None]).sqrt()
        scores = scores * outputs["valid"][..., None]  # (B, N, C): padding never detects
        boxes = distances_to_boxes(outputs["points"], outputs["distances"].float())  # (B, N, 4)
        results = []
        for image_scores, image_boxes, size in zip(scores, boxes, sizes.tolist()):
            flat = image_scores.flatten()  # (N * C,)
            top = flat.topk(min(candidates, flat.numel())).indices
            point, label = top // self.num_classes, top % self.num_classes
            results.append(postprocess(image_boxes[point], flat[top], label, size, score_threshold=score_threshold,
                                       max_detections=max_detections, nms_iou=nms_iou,
                                       class_agnostic=class_agnostic))
        return results


@HEADS.register("fcos", accepts=("image",))
def fcos(backbone: nn.Module, num_classes: int, dim: int = 128, tower_depth: int = 2, fpn: bool = True,
         strides: list[int] | None = None, center_radius: float = 1.5, focal_alpha: float = 0.25,
         focal_gamma: float = 2.0, box_weight: float = 1.0, labels: list[str] | None = None) -> FCOSHead:
    """Dense anchor-free FCOS head on the backbone's maps (default: the finest three with strides 8..64)."""
    return FCOSHead(backbone, num_classes, dim=dim, tower_depth=tower_depth, fpn=fpn, strides=strides,
                    center_radius=center_radius, focal_alpha=focal_alpha, focal_gamma=focal_gamma,
                    box_weight=box_weight, labels=labels)
