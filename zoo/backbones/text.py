"""Text backbones: a bidirectional encoder and a causal decoder on the shared block."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from zoo.features import Features
from zoo.layers.attention import KVCache, attention_mask
from zoo.layers.block import BlockConfig
from zoo.layers.norm import make_norm
from zoo.layers.position import RotaryEmbedding
from zoo.layers.stack import Stack
from zoo.registry import BACKBONES


@dataclass(frozen=True)
class TextConfig:
    """Architecture of a text transformer."""

    vocab_size: int = 8000
    dim: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    mlp: str = "gelu"            # "gelu" | "gelu_tanh" (GPT-2) | "swiglu"
    norm: str = "layer"
    norm_eps: float = 1e-6       # GPT-2: 1e-5
    position: str = "rope"       # "rope" | "learned"
    max_len: int = 2048          # learned positions only
    causal: bool = False
    dropout: float = 0.0
    bias: bool = True
    layer_heads: tuple[int, ...] | None = None   # per-layer head counts of a pruned model (None: ``heads``)
    layer_mlp: tuple[int, ...] | None = None     # per-layer MLP hidden widths of a pruned model
    drop_path: float = 0.0       # stochastic depth of the last block (0 at the first, linear between)


class TextTransformer(nn.Module):
    """Token embedding -> blocks -> final norm. Causal variants keep a KV cache while generating."""

    modality = "text"
    padding_sensitive = False   # padding is masked out of attention: a padded batch equals one by one

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg, self.dim, self.causal = cfg, cfg.dim, cfg.causal
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_embed = nn.Embedding(cfg.max_len, cfg.dim) if cfg.position == "learned" else None
        self.rope = RotaryEmbedding(cfg.dim // cfg.heads) if cfg.position == "rope" else None
        block = BlockConfig(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.mlp, cfg.norm, cfg.norm_eps, bias=cfg.bias,
                            dropout=cfg.dropout, drop_path=cfg.drop_path)
        self.stack = Stack(block, cfg.depth, cfg.layer_heads, cfg.layer_mlp)
        self.norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.embed.weight, std=0.02)
        if self.pos_embed is not None:
            nn.init.normal_(self.pos_embed.weight, std=0.01)

    def new_cache(self, capacity: int | None = None) -> KVCache:
        """An empty KV cache (dynamic, or static with ``capacity`` positions)."""
        return KVCache(len(self.stack.blocks), capacity)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, *,
                cache: KVCache | None = None) -> Features:
        """inputs: (B, T) token ids; mask: (B, T) bool True = real -> Features (B, T, D)."""
        batch, steps = inputs.shape
        real = mask if mask is not None else torch.ones(batch, steps, dtype=torch.bool, device=inputs.device)
        previous = cache.next_position if cache is not None and cache.next_position is not None else 0
        positions = (torch.cumsum(real.long(), dim=1) - 1).clamp(min=0) + (
            previous[:, None] if torch.is_tensor(previous) else previous)  # (B, T): left padding safe
        x = self.embed(inputs)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions.clamp(max=self.cfg.max_len - 1))
        x = self.drop(x)
        if cache is not None:
            key_mask = cache.append_mask(real)
            attn_mask, is_causal = attention_mask(key_mask, steps, self.causal, query_offset=cache.offset)
        else:
            attn_mask, is_causal = attention_mask(mask, steps, self.causal)
        x = self.stack(x, mask=attn_mask, is_causal=is_causal, pad_mask=mask, rope=self.rope,
                       positions=positions, cache=cache)
        if cache is not None:
            cache.advance(steps)
            cache.next_position = positions[:, -1] + 1
        return Features(self.norm(x), mask, cache=cache)


def _register(name: str, causal: bool, defaults: dict) -> None:
    @BACKBONES.register(name, modality="text", causal=causal, padding_sensitive=False,
                        input="token ids (B, T)", config=asdict(TextConfig(causal=causal, **defaults)))
    def build(**overrides: object) -> TextTransformer:
        return TextTransformer(TextConfig(causal=causal, **{**defaults, **overrides}))

    build.__doc__ = f"{'Causal decoder' if causal else 'Bidirectional encoder'} {name}: {defaults}"


_SIZES = {
    "tiny": dict(dim=128, depth=2, heads=2),
    "small": dict(dim=256, depth=4, heads=4),
    "base": dict(dim=512, depth=8, heads=8),
}
for _size, _numbers in _SIZES.items():
    _register(f"text_encoder_{_size}", False, _numbers)
    _register(f"text_decoder_{_size}", True, _numbers)
_register("text_decoder_gpt2", True, dict(vocab_size=50257, dim=768, depth=12, heads=12, position="learned",
                                          max_len=1024, norm="layer", mlp="gelu"))
