"""A stack of identical blocks with optional gradient checkpointing."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from zoo.layers.block import Block, BlockConfig


class Stack(nn.Module):
    """``depth`` blocks applied in order; ``grad_checkpointing`` trades compute for memory."""

    def __init__(self, cfg: BlockConfig, depth: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(depth))
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
