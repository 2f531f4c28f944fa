"""A stack of identical blocks with optional gradient checkpointing and stochastic depth spread over depth."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from zoo.layers.block import Block, BlockConfig


class Stack(nn.Module):
    """``depth`` blocks applied in order; ``grad_checkpointing`` trades compute for memory.

    ``layer_heads`` / ``layer_mlp`` (one number per block, from pruning) give each block its own
    self-attention head count and feed-forward width; None keeps ``cfg``'s in every block.
    ``cfg.drop_path`` is the rate of the last block: block ``i`` drops with ``cfg.drop_path * i / (depth - 1)``
    (0 at the first, as in Huang et al. 2016), see :func:`drop_path_rates`.
    """

    def __init__(self, cfg: BlockConfig, depth: int, layer_heads: Sequence[int] | None = None,
                 layer_mlp: Sequence[int] | None = None) -> None:
        super().__init__()
        for name, sizes in (("layer_heads", layer_heads), ("layer_mlp", layer_mlp)):
            if sizes is not None and len(sizes) != depth:
                raise ValueError(f"{name} gives {len(sizes)} sizes for {depth} layers; give one per layer")
        heads = list(layer_heads) if layer_heads is not None else [None] * depth
        widths = list(layer_mlp) if layer_mlp is not None else [None] * depth
        self.blocks = nn.ModuleList(Block(replace(cfg, drop_path=rate), h, w)
                                    for h, w, rate in zip(heads, widths, drop_path_rates(cfg.drop_path, depth)))
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """x: (B, T, D) -> (B, T, D); ``kwargs`` go to every block (``layer`` is set per block).

        ``context_kv`` may be a list with one (k, v) pair per block (decoders precompute them).
        """
        context_kv = kwargs.pop("context_kv", None)
        for index, block in enumerate(self.blocks):
            kv = context_kv[index] if isinstance(context_kv, list) else context_kv
            if self.grad_checkpointing and self.training and kwargs.get("cache") is None:
                x = checkpoint(block, x, use_reentrant=False, layer=index, context_kv=kv, **kwargs)
            else:
                x = block(x, layer=index, context_kv=kv, **kwargs)
        return x


def drop_path_rates(top: float, depth: int) -> list[float]:
    """``depth`` drop rates rising linearly from 0 at the first block to ``top`` at the last."""
    if depth < 2:
        return [0.0] * depth
    return [top * index / (depth - 1) for index in range(depth)]
