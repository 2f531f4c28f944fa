"""The detection baseline: one centred box per class in every image (`zoo demo`).

For each class of the training boxes: a box of that class's mean training width and height (as
fractions of their images' sides), centred on the image, scored by the class's share of the
training boxes. It sees no pixel. Scored by the task's own COCO evaluator
(:func:`coco_evaluator`, ``map_50`` the primary metric) against every test box as read.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from tasks.detection.evaluation import coco_evaluator, coco_summary
from tasks.engine.evaluation import label_mapping

NAME = "centred mean box per class"


def class_boxes(train: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(class ids (K,) of the classes with training boxes, their mean (K, 2) width and height as
    fractions of the image's, their (K,) shares of the training boxes)."""
    sizes, labels = [], []
    for i in range(len(train)):
        sample = train[i]
        height, width = sample["image"].shape[-2:]
        boxes = sample["boxes"].float()                                                  # (N, 4) xyxy
        sizes.append((boxes[:, 2:] - boxes[:, :2]) / torch.tensor([width, height]))      # (N, 2)
        labels.append(sample["labels"].long())
    sizes, labels = torch.cat(sizes), torch.cat(labels)
    classes, counts = labels.unique(return_counts=True)
    means = torch.stack([sizes[labels == c].mean(dim=0) for c in classes])               # (K, 2)
    return classes, means, counts.float() / counts.sum()


def centred_boxes(means: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(K, 4) xyxy boxes of (K, 2) width/height fractions centred on a ``height`` x ``width`` image."""
    half = means * torch.tensor([width, height]) / 2                                      # (K, 2)
    centre = torch.tensor([width / 2, height / 2])
    return torch.cat([centre - half, centre + half], dim=1)


def score(train: Dataset, test: Dataset) -> dict[str, Any]:
    """The task's COCO metrics of the centred boxes learnt from ``train``, on ``test``."""
    classes, means, shares = class_boxes(train)
    mapping = label_mapping(list(test.classes), list(train.classes), getattr(test, "source", "data set"))
    metric = coco_evaluator()
    for i in range(len(test)):
        sample = test[i]
        height, width = sample["image"].shape[-2:]
        found = {"boxes": centred_boxes(means, height, width), "scores": shares, "labels": classes}
        metric.update([found], [{"boxes": sample["boxes"].float(), "labels": mapping[sample["labels"].long()]}])
    return coco_summary(metric)
