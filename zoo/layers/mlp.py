"""Feed-forward layers: GELU MLP (exact or tanh-approximated, as GPT-2) and SwiGLU."""
from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``gelu``: fc1 -> GELU -> fc2 (``gelu_tanh``: GELU's tanh approximation); ``swiglu``: (silu(w1 x) * w3 x) -> w2, hidden scaled by 2/3.

    ``width`` (a pruned layer's) sets the number of hidden channels fc2 reads exactly, instead of
    deriving it from ``hidden``.
    """

    def __init__(self, dim: int, hidden: int, kind: str = "gelu", dropout: float = 0.0, bias: bool = True,
                 width: int | None = None) -> None:
        super().__init__()
        self.kind = kind
        if width is not None and width < 1:
            raise ValueError(f"an MLP needs at least one hidden channel, got {width}")
        if kind in ("gelu", "gelu_tanh"):
            hidden = width or hidden
            self.fc1 = nn.Linear(dim, hidden, bias=bias)
        elif kind == "swiglu":
            hidden = width or int(2 * hidden / 3)
            self.fc1 = nn.Linear(dim, 2 * hidden, bias=bias)  # gate and value, fused
        else:
            raise ValueError(f"unknown mlp {kind!r}; expected 'gelu', 'gelu_tanh' or 'swiglu'")
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.kind == "gelu":
            h = nn.functional.gelu(h)
        elif self.kind == "gelu_tanh":
            h = nn.functional.gelu(h, approximate="tanh")
        else:
            gate, value = h.chunk(2, dim=-1)
            h = nn.functional.silu(gate) * value
        return self.drop(self.fc2(self.drop(h)))
