"""The Head contract of docs/design.md: ``forward``, ``loss``, ``decode`` (+ the step protocol for generators)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.features import Features


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
