"""ViT weights -> our ``vit_*`` backbone and classification head: timm ``vit_*`` and transformers ``ViT*``.

Both are pre-norm blocks with fused (timm) or separate (transformers) q/k/v, exact GELU, a class
token and learned positions; transformers' q, k, v are concatenated into our fused ``qkv``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from zoo.backbones.convert import timm_vit_to_zoo
from zoo.errors import ZooError

# transformers 4.x layout (what save_pretrained writes) -> the 5.x module names read below
_LEGACY = [(re.compile(r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\."),
            lambda m: f"layers.{m[1]}.attention.{m[2][0]}_proj."),
           (re.compile(r"encoder\.layer\.(\d+)\.attention\.output\.dense\."),
            lambda m: f"layers.{m[1]}.attention.o_proj."),
           (re.compile(r"encoder\.layer\.(\d+)\.intermediate\.dense\."), lambda m: f"layers.{m[1]}.mlp.fc1."),
           (re.compile(r"encoder\.layer\.(\d+)\.output\.dense\."), lambda m: f"layers.{m[1]}.mlp.fc2."),
           (re.compile(r"encoder\.layer\.(\d+)\."), lambda m: f"layers.{m[1]}.")]
_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_QKV = re.compile(r"^layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$")
_IN_LAYER = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.o_proj": "attn.proj",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
_SIZES = {192: "vit_tiny", 384: "vit_small", 768: "vit_base"}


def registry_name(dim: int) -> str:
    """The ``vit_*`` entry of that width (every entry takes every argument; the name is for people)."""
    return _SIZES.get(dim, "vit_tiny")


def transformers_args(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """Our ViT arguments for a transformers ViT ``config.json``."""
    if config.get("hidden_act", "gelu") != "gelu" or not config.get("qkv_bias", True):
        raise ZooError(f"{path}: hidden_act={config.get('hidden_act')!r}, qkv_bias={config.get('qkv_bias')!r}: "
                       f"zoo's ViT converts exact GELU with q/k/v biases only")
    size, patch = config.get("image_size", 224), config.get("patch_size", 16)
    if not isinstance(size, int) or not isinstance(patch, int):
        raise ZooError(f"{path}: image_size {size!r} / patch_size {patch!r}: zoo's ViT converts square sizes only")
    dim = config["hidden_size"]
    return dict(img_size=size, patch_size=patch, in_chans=config.get("num_channels", 3), dim=dim,
                depth=config["num_hidden_layers"], heads=config["num_attention_heads"],
                mlp_ratio=config["intermediate_size"] / dim, class_token=True,
                norm_eps=float(config.get("layer_norm_eps", 1e-12)),
                dropout=float(config.get("hidden_dropout_prob", 0.0)))


def convert_transformers(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str],
                                                                      dict[str, torch.Tensor], list[str]]:
    """transformers ViT tensors -> (backbone tensors, our name -> file name, head tensors, unused names)."""
    backbone: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    head: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    qkv: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, tensor in tensors.items():
        if key.startswith("classifier."):
            head["fc." + key[len("classifier."):]] = tensor
            continue
        name = key[len("vit."):] if key.startswith("vit.") else key
        for pattern, new in _LEGACY:
            name = pattern.sub(new, name)
        layer, part = _LAYER.match(name), _QKV.match(name)
        if name in _TOP:
            backbone[_TOP[name]], origin[_TOP[name]] = tensor, key
        elif part:
            qkv.setdefault(f"stack.blocks.{part[1]}.attn.qkv.{part[3]}", {})[part[2]] = (key, tensor)
        elif layer and layer[2].rpartition(".")[0] in _IN_LAYER:
            part, _, kind = layer[2].rpartition(".")
            ours = f"stack.blocks.{layer[1]}.{_IN_LAYER[part]}.{kind}"
            backbone[ours], origin[ours] = tensor, key
        else:
            unused.append(key)   # the pooler (dense + tanh over the class token) has no counterpart
    for ours, parts in qkv.items():
        if sorted(parts) != ["k", "q", "v"]:
            raise ZooError(f"tensor {ours!r}: the file holds only the {'/'.join(sorted(parts))} parts of q, k, v")
        backbone[ours] = torch.cat([parts[p][1] for p in "qkv"], dim=0)   # (3D, D) or (3D,): q, k, v stacked
        origin[ours] = parts["q"][0]
    return backbone, origin, head, unused


def timm_args(tensors: dict[str, torch.Tensor], heads: int | None) -> dict[str, Any]:
    """Our ViT arguments read from a timm ViT state dict's shapes; ``heads`` defaults to dim // 64
    (every timm ViT uses 64-wide heads) when the timm model name is not given."""
    proj = tensors["patch_embed.proj.weight"]  # (D, C, p, p)
    dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    prefix = 1 if "cls_token" in tensors else 0
    grid = round((tensors["pos_embed"].shape[1] - prefix) ** 0.5)
    depth = len({k.split(".")[1] for k in tensors if k.startswith("blocks.")})
    return dict(img_size=grid * patch, patch_size=patch, in_chans=in_chans, dim=dim, depth=depth,
                heads=heads or max(dim // 64, 1), mlp_ratio=tensors["blocks.0.mlp.fc1.weight"].shape[0] / dim,
                class_token=bool(prefix), norm_eps=1e-6)


def convert_timm(tensors: dict[str, torch.Tensor],
                 path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """timm ViT tensors -> (backbone tensors, head tensors); a layout we do not build is refused."""
    try:
        return timm_vit_to_zoo(tensors)
    except ValueError as err:
        raise ZooError(f"{path}: {err}") from None


def timm_heads(model_name: str, model_args: dict[str, Any]) -> int:
    """The number of attention heads of timm model ``model_name`` (built on the meta device, no weights)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False, **model_args)
    if not hasattr(model, "blocks"):
        raise ZooError(f"timm model {model_name!r} is not a ViT; zoo converts timm vit_* models only")
    return int(model.blocks[0].attn.num_heads)
