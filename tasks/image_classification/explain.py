"""What the model looked at: attention rollout for our ViT, gradient saliency for anything else.

- **Attention rollout** (Abnar & Zuidema, 2020) for :class:`zoo.backbones.vision.VisionTransformer`
  with a class token: each block's attention, averaged over heads, gets the residual path
  added (``0.5 A + 0.5 I``, rows renormalised); the product over blocks says how much each
  patch flowed into the class token the head reads. The attention weights are recomputed
  from each block's input with its own ``qkv`` projection, because the fused
  ``scaled_dot_product_attention`` kernel never materialises them.
- **Gradient saliency** (Simonyan et al., 2014) for every other backbone (timm CNNs, ViTs
  without a class token): ``|d logit_top / d pixel|``, the maximum over colour channels.

:func:`save_overlay` writes the picture people look at: the preprocessed input (what the
model saw) beside the same image under the heat map.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from zoo.backbones.vision import VisionTransformer

MIN_SIDE = 224  # pictures are enlarged (nearest neighbour) to at least this many pixels
GAP = 4          # white pixels between the two panels


def explain(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Heat maps (B, H, W) in [0, 1] at the input's resolution for (B, 3, H, W) images, and the method's name."""
    backbone = model.backbone
    if isinstance(backbone, VisionTransformer) and backbone.cls_token is not None:
        maps, method = attention_rollout(backbone, images), "attention rollout"
    else:
        maps, method = gradient_saliency(model, images), "gradient saliency"
    maps = F.interpolate(maps[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = maps.flatten(1).amin(dim=1)[:, None, None]
    high = maps.flatten(1).amax(dim=1)[:, None, None]
    return (maps - low) / (high - low).clamp(min=1e-12), method


@torch.no_grad()
def attention_rollout(backbone: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """(B, H/p, W/p): the class token's rolled-out attention to each patch, for (B, 3, H, W) images."""
    attentions: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        attentions.append(_attention_weights(module, args[0]))

    hooks = [block.attn.register_forward_hook(record) for block in backbone.stack.blocks]
    try:
        features = backbone(images.float())
    finally:
        for hook in hooks:
            hook.remove()
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens, device=images.device)
    rollout = eye.expand(images.shape[0], tokens, tokens)
    for weights in attentions:
        mixed = 0.5 * weights.mean(dim=1) + 0.5 * eye  # (B, T, T): heads averaged, residual added
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed @ rollout
    grid = features.maps[0].shape[-2:]
    return rollout[:, 0, 1:].reshape(images.shape[0], *grid)  # (B, H/p, W/p)


def gradient_saliency(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, H, W): gradient magnitude of each image's top logit with respect to its pixels."""
    images = images.detach().float().requires_grad_(True)
    with torch.enable_grad():
        logits = model({"inputs": images})["logits"].float()  # (B, C)
        top = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(top, images)
    return grad.abs().amax(dim=1)  # (B, H, W)


def save_overlay(image: torch.Tensor, heat: torch.Tensor, mean: list[float], std: list[float], path: Path) -> Path:
    """PNG of a normalised (3, H, W) image beside itself under the (H, W) heat map in [0, 1]."""
    from matplotlib import colormaps

    pixels = image.detach().float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    picture = (pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)  # (H, W, 3)
    colours = colormaps["inferno"](heat.detach().float().cpu().numpy())[..., :3] * 255  # (H, W, 3)
    blended = (0.45 * picture + 0.55 * colours).astype(np.uint8)
    height, width = picture.shape[:2]
    scale = max(1, math.ceil(MIN_SIDE / max(height, width)))
    size = (width * scale, height * scale)
    canvas = Image.new("RGB", (2 * size[0] + GAP, size[1]), "white")
    canvas.paste(Image.fromarray(picture).resize(size, Image.NEAREST), (0, 0))
    canvas.paste(Image.fromarray(blended).resize(size, Image.NEAREST), (size[0] + GAP, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def _attention_weights(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, T) softmax attention of a self-attention module for its (B, T, D) input."""
    batch, steps, _ = x.shape
    qkv = attn.qkv(x).float().view(batch, steps, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]  # (B, nh, T, hs)
    return (q @ k.transpose(-2, -1) * attn.head_dim ** -0.5).softmax(dim=-1)
