"""Pooled classifier for any modality: mean, class-token or last-token pooling over the mask."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from heads.base import Head
from zoo.features import Features
from zoo.registry import HEADS


def pool(features: Features, how: str) -> torch.Tensor:
    """(B, T, D) tokens -> (B, D) by ``mean`` over real positions, ``cls`` (first) or ``last`` real token."""
    tokens, mask = features.tokens, features.mask
    if how == "cls":
        return tokens[:, 0]
    if how == "last":
        if mask is None:
            return tokens[:, -1]
        last = mask.long().cumsum(dim=1).argmax(dim=1)  # index of the last real position
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]
    if how == "mean":
        if mask is None:
            return tokens.mean(dim=1)
        weights = mask.to(tokens.dtype)[..., None]  # (B, T, 1)
        return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {how!r}; expected mean, cls or last")


class ClassificationHead(Head):
    """Pool -> dropout -> linear. ``labels`` (class names) are stored with the checkpoint."""

    def __init__(self, dim: int, num_classes: int, pool: str = "mean", dropout: float = 0.0,
                 label_smoothing: float = 0.0, labels: list[str] | None = None) -> None:
        super().__init__()
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} label names for {num_classes} classes")
        self.pooling, self.label_smoothing = pool, label_smoothing
        self.labels = list(labels) if labels else [str(i) for i in range(num_classes)]
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, features: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(self.drop(pool(features, self.pooling)))}  # (B, C)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Cross-entropy; ``labels`` may be ids (B,) or soft targets (B, C) from mixup/cutmix."""
        logits = outputs["logits"].float()
        return {"loss": F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)}

    def decode(self, outputs: dict[str, torch.Tensor], top_k: int = 1, **options: Any) -> list[list[tuple[str, float]]]:
        """Per row, the ``top_k`` (label, probability) pairs, most probable first."""
        probs = outputs["logits"].float().softmax(dim=-1)
        values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        return [[(self.labels[i], float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
                for row_p, row_i in zip(values, indices)]


def _default_pool(backbone: nn.Module) -> str:
    if getattr(backbone, "causal", False):
        return "last"
    if getattr(getattr(backbone, "cfg", None), "class_token", False):
        return "cls"
    return "mean"


@HEADS.register("classification", accepts=("text", "image", "audio"))
def classification(backbone: nn.Module, num_classes: int, pool: str = "auto", dropout: float = 0.0,
                   label_smoothing: float = 0.0, labels: list[str] | None = None) -> ClassificationHead:
    """Classifier over pooled features; ``pool="auto"``: last token for causal, class token for ViT, else mean."""
    head = ClassificationHead(backbone.dim, num_classes, _default_pool(backbone) if pool == "auto" else pool,
                              dropout, label_smoothing, labels)
    head.check_backbone(backbone)
    return head
