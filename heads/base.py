"""The Head contract of docs/design.md: ``forward``, ``loss``, ``decode`` (+ the step protocol for generators)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.features import Features


@dataclass
class SoftOutputs:
    """What a student learns from a teacher (``zoo train --distill-from``): one row of class logits per
    predicted position, and for detectors the box each position regresses."""

    logits: torch.Tensor                  # (N, C): N predicted positions (rows, tokens, frames, queries)
    binary: bool = False                  # independent sigmoid per class (dense detectors), not one softmax
    boxes: torch.Tensor | None = None     # (N, 4) in a unit free of the image size, or None


class Head(nn.Module):
    """Base of every head. ``accepts``: backbone modalities; ``requires_causal`` for LM heads."""

    accepts: tuple[str, ...] = ("text", "image", "audio")
    requires_causal: bool = False

    @classmethod
    def check_backbone(cls, backbone: nn.Module) -> None:
        """Refuse a backbone this head cannot use, with a reason (a class method, so head factories
        check before they read anything else of the backbone)."""
        if backbone.modality not in cls.accepts:
            raise ZooError(f"{cls.__name__} accepts {', '.join(cls.accepts)} backbones, not {backbone.modality!r}")
        if cls.requires_causal and not backbone.causal:
            raise ZooError(f"{cls.__name__} needs a causal backbone: a bidirectional one would learn to read the future")

    def forward(self, features: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def decode(self, outputs: dict[str, torch.Tensor], **options: Any) -> list[Any]:
        raise NotImplementedError

    def soft_outputs(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> SoftOutputs:
        """The outputs distillation matches: here every position of ``logits`` (B, C) or (B, T, C); heads
        whose outputs have padding, or boxes, say which positions are real."""
        logits = outputs["logits"]
        return SoftOutputs(logits.reshape(-1, logits.shape[-1]))
