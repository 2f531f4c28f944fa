"""DETR's set loss: Hungarian matching of queries to objects, then class, L1 and GIoU losses.

Boxes here are (cx, cy, w, h) normalised by each image's own (unpadded) size. The matcher
pairs each object with one query by minimising ``class * (-p(class)) + bbox * L1 + giou *
(-GIoU)`` (``scipy.optimize.linear_sum_assignment``); unmatched queries learn the extra
"no object" class, whose cross-entropy weight is ``no_object_weight``. Box losses are sums
over matched pairs divided by the number of objects in the batch (at least 1), so a batch
without objects gives finite losses whose gradients reach every prediction (through the
no-object cross-entropy). With auxiliary outputs (one per earlier decoder layer) every layer
is matched and scored the same way (parts suffixed ``_0``, ``_1``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou

Match = tuple[torch.Tensor, torch.Tensor]  # (query indices (K,), object indices (K,)) long


def assign(cost: torch.Tensor) -> Match:
    """The minimum-cost one-to-one assignment of a (queries, objects) cost matrix, sorted by query."""
    if cost.numel() == 0:
        empty = torch.empty(0, dtype=torch.long)
        return empty, empty.clone()
    rows, cols = linear_sum_assignment(cost.detach().cpu().float().numpy())
    order = np.argsort(rows)
    return torch.as_tensor(rows[order], dtype=torch.long), torch.as_tensor(cols[order], dtype=torch.long)


@dataclass(frozen=True)
class SetLossWeights:
    """Weights of the matching costs and of the loss parts (DETR's defaults)."""

    cls: float = 1.0
    bbox: float = 5.0
    giou: float = 2.0
    no_object: float = 0.1


def hungarian_match(logits: torch.Tensor, boxes: torch.Tensor, target_labels: list[torch.Tensor],
                    target_boxes: list[torch.Tensor], weights: SetLossWeights) -> list[Match]:
    """Per image, (query, object) pairs. logits (B, Q, C+1), boxes (B, Q, 4) cxcywh; targets per image."""
    matches = []
    with torch.no_grad():
        probs = logits.float().softmax(dim=-1)  # (B, Q, C+1)
        for prob, box, labels, target in zip(probs, boxes.float(), target_labels, target_boxes):
            if labels.numel() == 0:
                matches.append(assign(prob.new_empty(prob.shape[0], 0)))
                continue
            cost = (-weights.cls * prob[:, labels]  # (Q, M)
                    + weights.bbox * torch.cdist(box, target.float(), p=1)
                    - weights.giou * generalized_box_iou(_xyxy(box), _xyxy(target.float())))
            matches.append(assign(cost))
    return matches


def _xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


def set_loss(logits: torch.Tensor, boxes: torch.Tensor, target_labels: list[torch.Tensor],
             target_boxes: list[torch.Tensor], weights: SetLossWeights, num_classes: int
             ) -> dict[str, torch.Tensor]:
    """Weighted ``ce``, ``bbox`` (L1) and ``giou`` losses of one decoder layer's predictions."""
    matches = hungarian_match(logits, boxes, target_labels, target_boxes, weights)
    device = logits.device
    batch_index = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(device)
    query_index = torch.cat([q for q, _ in matches]).to(device)
    classes = torch.full(logits.shape[:2], num_classes, dtype=torch.long, device=device)  # (B, Q): no object
    classes[batch_index, query_index] = torch.cat([labels[o.to(device)] for labels, (_, o) in
                                                   zip(target_labels, matches)]).to(device)
    class_weight = torch.ones(num_classes + 1, device=device)
    class_weight[num_classes] = weights.no_object
    ce = F.cross_entropy(logits.float().transpose(1, 2), classes, weight=class_weight)
    matched = boxes[batch_index, query_index].float()  # (K, 4)
    target = torch.cat([t[o.to(device)] for t, (_, o) in zip(target_boxes, matches)]).float()  # (K, 4)
    count = max(sum(len(t) for t in target_labels), 1)
    l1 = F.l1_loss(matched, target, reduction="sum") / count
    giou = (1 - torch.diag(generalized_box_iou(_xyxy(matched), _xyxy(target)))).sum() / count
    return {"ce": weights.cls * ce, "bbox": weights.bbox * l1, "giou": weights.giou * giou}
