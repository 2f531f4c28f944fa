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
model saw) beside the same image under the heat map, titled with the predicted label, its
probability and the method, with a colour bar. `zoo predict --explain` and `zoo explain
image_classification` (``--method auto|attention_rollout|gradient_saliency``) both draw it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from tasks.engine.attention_maps import recorded_attention
from tasks.engine.explain_plots import denormalised, fraction, heading, save_image_maps
from zoo.backbones.vision import VisionTransformer
from zoo.errors import ZooError

METHODS = ("auto", "attention_rollout", "gradient_saliency")   # auto: rollout where the backbone allows it


def explain(model: nn.Module, images: torch.Tensor, method: str = "auto") -> tuple[torch.Tensor, str]:
    """Heat maps (B, H, W) in [0, 1] at the input's resolution for (B, 3, H, W) images, and the method's name."""
    backbone = model.backbone
    rollout = isinstance(backbone, VisionTransformer) and backbone.cls_token is not None
    if method == "attention_rollout" and not rollout:
        raise ZooError(f"--method attention_rollout needs the zoo's ViT with a class token; backbone "
                       f"{backbone.zoo_spec['name']!r} has none: use gradient_saliency")
    if method == "attention_rollout" or (method == "auto" and rollout):
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
    with recorded_attention([block.attn for block in backbone.stack.blocks]) as attentions:
        features = backbone(images.float())
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


def save_overlay(image: torch.Tensor, heat: torch.Tensor, mean: list[float], std: list[float], path: Path, *,
                 label: str, probability: float, method: str) -> Path:
    """PNG of a normalised (3, H, W) image beside itself under the (H, W) heat map in [0, 1], titled with
    the predicted ``label``, its ``probability`` and the ``method``, with a colour bar."""
    return save_image_maps(denormalised(image, mean, std), [heat.detach().float().cpu().numpy()], [method],
                           heading(label, f"p = {fraction(probability)}", method), path)


def explain_inputs(model: nn.Module, inputs: Sequence[str], method: str, out: Path,
                   **options: Any) -> list[dict[str, Any]]:
    """`zoo explain image_classification`: per image file the prediction (label and probability, as `zoo
    predict` gives them), the method used and the picture in ``files`` (`zoo predict --explain`'s)."""
    rows = zoo.get_task("image_classification").predict(model, list(inputs), top_k=1, explain_to=out,
                                                        explain_method=method)
    return [{"prediction": row["label"], "score": row["probability"], "score_name": "probability",
             "method": row["explanation_method"], "files": [row["explanation"]]} for row in rows]
