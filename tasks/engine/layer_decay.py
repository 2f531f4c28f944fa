"""Layer-wise learning-rate decay (``--layer-decay RATE``): each parameter's lr multiplier by depth.

The numbering of BEiT and timm's ``param_groups_layer_decay``: of a backbone with L blocks in
``backbone.stack.blocks`` (every zoo backbone), the stem (parameters the backbone registers
before its first block: patch or token embeddings, positions, convolutional subsampling) is
layer 0, block i (0-based) layer i + 1, and what follows the blocks (the final norm) and the
head are layer L + 1. Layer l's lr is ``lr * RATE ** (L + 1 - l)``: the head keeps ``lr``, block
i gets ``RATE ** (L - i)``, the stem ``RATE ** (L + 1)``. Backbones without ``stack.blocks``
(timm, transformers adapters) are refused: their depth has no common name.
"""
from __future__ import annotations

import torch

from zoo.errors import ZooError


def layer_scales(model: torch.nn.Module, rate: float) -> dict[int, float]:
    """The lr multiplier of every parameter of ``model`` (by ``id``) under layer decay ``rate``."""
    backbone = getattr(model, "backbone", None)
    blocks = getattr(getattr(backbone, "stack", None), "blocks", None)
    if not isinstance(blocks, torch.nn.ModuleList) or len(blocks) == 0:
        kind = type(backbone).__name__ if backbone is not None else "this model"
        raise ZooError(f"--layer-decay: {kind} has no stack.blocks to number its layers by; "
                       f"use a zoo backbone or pass --layer-decay 1")
    depth = len(blocks)
    block_of = {id(p): i for i, block in enumerate(blocks) for p in block.parameters()}
    scales: dict[int, float] = {}
    before_blocks = True
    for param in backbone.parameters():
        if id(param) in block_of:
            before_blocks = False
            scales[id(param)] = rate ** (depth - block_of[id(param)])
        elif before_blocks:
            scales[id(param)] = rate ** (depth + 1)
    return {id(p): scales.get(id(p), 1.0) for p in model.parameters()}
