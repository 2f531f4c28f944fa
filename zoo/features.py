"""The Features contract: what every backbone returns and every head reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Features:
    """Backbone output.

    tokens: (B, T, D) hidden states; mask: (B, T) bool, True = real position, or None when
    every position is real; maps: (B, C, H, W) feature maps for dense image heads, finest
    first (may be empty); cache: the KV cache of a causal backbone while generating.
    """

    tokens: torch.Tensor
    mask: torch.Tensor | None = None
    maps: list[torch.Tensor] = field(default_factory=list)
    cache: Any = None
