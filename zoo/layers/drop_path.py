"""Stochastic depth (Huang et al. 2016): drop a residual branch for whole samples while training."""
from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Zero the branch output of each sample with probability ``rate`` in training, scaling the kept
    ones by ``1 / (1 - rate)`` so the expectation is unchanged; the identity in eval or at rate 0."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop_path is a probability in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, ...) -> (B, ...), one keep/drop draw per sample (dim 0)."""
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        kept = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)  # (B, 1, ...)
        return x * kept / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
