"""The one pre-norm transformer block every backbone and decoder head uses.

Options: cross-attention (decoders), the Conformer layout (macaron half-step
feed-forwards around attention and a convolution module, then a final norm), stochastic depth
on every residual branch and locality self-attention (small-data ViTs).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zoo.layers.attention import Attention, KVCache
from zoo.layers.drop_path import DropPath
from zoo.layers.mlp import MLP
from zoo.layers.norm import make_norm
from zoo.layers.position import RotaryEmbedding


@dataclass(frozen=True)
class BlockConfig:
    """Architecture of one block (shared by every layer of a stack)."""

    dim: int
    heads: int
    mlp_ratio: float = 4.0
    mlp: str = "gelu"            # "gelu" | "swiglu"
    norm: str = "layer"          # "layer" | "rms"
    norm_eps: float = 1e-6
    bias: bool = True
    dropout: float = 0.0
    cross: bool = False          # add cross-attention over a context (decoder)
    context_dim: int | None = None
    conformer: bool = False      # macaron FFNs + convolution module
    conv_kernel: int = 15
    drop_path: float = 0.0       # per-sample residual-branch drop rate (a Stack spreads it over depth)
    lsa: bool = False            # locality self-attention: learnable temperature + no attention to itself


class ConvModule(nn.Module):
    """Conformer convolution module: pointwise + GLU, depthwise conv, norm, SiLU, pointwise.

    Padded positions are zeroed before the depthwise convolution so that padding never
    leaks into real frames (a padded batch equals one-by-one). LayerNorm instead of
    BatchNorm keeps that true in training as well.
    """

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        h = nn.functional.glu(self.pointwise_in(x), dim=-1)  # (B, T, D)
        if pad_mask is not None:
            h = h * pad_mask[..., None].to(h.dtype)
        h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)  # (B, T, D)
        h = nn.functional.silu(self.norm(h))
        return self.drop(self.pointwise_out(h))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)) [+ cross(norm(x), ctx)] [+ conv] + mlp(norm(x)).

    ``heads`` and ``mlp_width`` (a pruned layer's sizes) override the self-attention head count
    (each head keeps ``cfg.dim // cfg.heads`` channels) and the hidden channels of the
    feed-forward(s); None keeps those of ``cfg``.
    """

    def __init__(self, cfg: BlockConfig, heads: int | None = None, mlp_width: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.norm1 = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        head_dim = cfg.dim // cfg.heads if heads is not None else None
        self.attn = Attention(cfg.dim, heads or cfg.heads, bias=cfg.bias, dropout=cfg.dropout, head_dim=head_dim,
                              lsa=cfg.lsa)
        if cfg.cross:
            self.norm_cross = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
            self.cross_attn = Attention(cfg.dim, cfg.heads, cross=True, context_dim=cfg.context_dim,
                                        bias=cfg.bias, dropout=cfg.dropout)
        if cfg.conformer:
            self.norm_ff1 = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
            self.ff1 = MLP(cfg.dim, hidden, cfg.mlp, cfg.dropout, cfg.bias, mlp_width)
            self.norm_conv = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
            self.conv = ConvModule(cfg.dim, cfg.conv_kernel, cfg.dropout)
            self.norm_out = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        self.norm2 = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg.dim, hidden, cfg.mlp, cfg.dropout, cfg.bias, mlp_width)
        self.drop = nn.Dropout(cfg.dropout)
        self.drop_path = DropPath(cfg.drop_path)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, is_causal: bool = False,
                pad_mask: torch.Tensor | None = None, rope: RotaryEmbedding | None = None,
                positions: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0,
                context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D) -> (B, T, D). ``mask``/``context_mask`` are SDPA masks; ``pad_mask`` (B, T)."""
        conformer = self.cfg.conformer
        if conformer:
            x = x + self.drop_path(0.5 * self.ff1(self.norm_ff1(x)))
        x = x + self.drop_path(self.drop(self.attn(self.norm1(x), mask=mask, is_causal=is_causal, rope=rope,
                                                   positions=positions, cache=cache, layer=layer)))
        if self.cfg.cross:
            x = x + self.drop_path(self.drop(self.cross_attn(self.norm_cross(x), mask=context_mask,
                                                             context_kv=context_kv)))
        if conformer:
            x = x + self.drop_path(self.conv(self.norm_conv(x), pad_mask))
        mlp = self.mlp(self.norm2(x))
        x = x + self.drop_path(0.5 * mlp if conformer else mlp)  # no `1.0 *`: a full pass per block
        return self.norm_out(x) if conformer else x
