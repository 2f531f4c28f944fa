"""LayerNorm and RMSNorm."""
from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (no bias, no centring)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def make_norm(kind: str, dim: int, eps: float = 1e-6) -> nn.Module:
    """``"layer"`` -> LayerNorm, ``"rms"`` -> RMSNorm."""
    if kind == "layer":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rms":
        return RMSNorm(dim, eps)
    raise ValueError(f"unknown norm {kind!r}; expected 'layer' or 'rms'")
