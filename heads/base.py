"""The Head contract of DESIGN.md: ``forward``, ``loss``, ``decode`` (+ the step protocol for generators)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.features import Features


class Head(nn.Module):
    """Base of every head. ``accepts``: backbone modalities; ``requires_causal`` for LM heads."""

    accepts: tuple[str, ...] = ("text", "image", "audio")
    requires_causal: bool = False

    def check_backbone(self, backbone: nn.Module) -> None:
        """Refuse a backbone this head cannot use, with a reason."""
        name = type(self).__name__
        if backbone.modality not in self.accepts:
            raise ValueError(f"{name} accepts {', '.join(self.accepts)} backbones, not {backbone.modality!r}")
        if self.requires_causal and not backbone.causal:
            raise ValueError(f"{name} needs a causal backbone: a bidirectional one would learn to read the future")

    def forward(self, features: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def decode(self, outputs: dict[str, torch.Tensor], **options: Any) -> list[Any]:
        raise NotImplementedError
