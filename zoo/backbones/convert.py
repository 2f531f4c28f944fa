"""Convert timm ``vit_*_patch16_224`` state dicts into our ViT of the same shape."""
from __future__ import annotations

import re

import torch

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.*)$")


def timm_vit_to_zoo(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a timm ViT state dict into (backbone weights, classifier weights) in our names.

    Our block keeps timm's names inside a block (norm1, attn.qkv, attn.proj, norm2,
    mlp.fc1, mlp.fc2), so conversion is a prefix change; ``head.*`` becomes the
    classification head's ``fc.*``.
    """
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        block = _BLOCK.match(key)
        if block:
            backbone[f"stack.blocks.{block.group(1)}.{block.group(2)}"] = value
        elif key.startswith("head."):
            head["fc." + key[len("head."):]] = value
        elif key.split(".")[0] in ("patch_embed", "cls_token", "pos_embed", "norm"):
            backbone[key] = value
        elif key.startswith("fc_norm.") or key.startswith("head_drop"):
            raise ValueError(f"timm key {key!r} has no counterpart: convert models with global_pool='token'")
        else:
            raise ValueError(f"unexpected timm ViT key {key!r}")
    return backbone, head
