"""transformers GPT-2 (``GPT2Model``/``GPT2LMHeadModel``) -> our ``text_decoder_gpt2`` backbone.

The architectures match exactly: learned absolute positions, pre-norm LayerNorm blocks, fused
qkv, GELU's tanh approximation, biases everywhere, and the LM head tied to the token embedding.
GPT-2's ``Conv1D`` stores weights as (in, out): they are transposed into ``nn.Linear``'s (out, in).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ZooError

NAME = "text_decoder_gpt2"
_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
_BLOCK = re.compile(r"^h\.(\d+)\.(.+)$")
_IN_BLOCK = {"ln_1": "norm1", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj", "ln_2": "norm2",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_TOP = {"wte.weight": "embed.weight", "wpe.weight": "pos_embed.weight", "ln_f.weight": "norm.weight",
        "ln_f.bias": "norm.bias"}


def backbone_args(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """Our ``text_decoder_gpt2`` arguments for a GPT-2 ``config.json`` (refuses variants we do not build)."""
    activation = config.get("activation_function", "gelu_new")
    if activation not in _ACTIVATIONS:
        raise ZooError(f"{path}: activation_function {activation!r} is not converted; expected one of "
                       f"{', '.join(_ACTIVATIONS)}")
    for flag, wanted in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                         ("reorder_and_upcast_attn", False), ("add_cross_attention", False)):
        if config.get(flag, wanted) != wanted:
            raise ZooError(f"{path}: {flag}={config[flag]!r} is a GPT-2 variant zoo does not build; expected {wanted}")
    dim = config["n_embd"]
    return dict(vocab_size=config["vocab_size"], dim=dim, depth=config["n_layer"], heads=config["n_head"],
                mlp_ratio=(config.get("n_inner") or 4 * dim) / dim, mlp=_ACTIVATIONS[activation], norm="layer",
                norm_eps=float(config.get("layer_norm_epsilon", 1e-5)), position="learned",
                max_len=config["n_positions"], dropout=float(config.get("resid_pdrop", 0.0)), bias=True)


def convert(tensors: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """GPT-2 tensors -> (our backbone tensors, our name -> file name, the file's unused names).

    A stored ``lm_head.weight`` must equal the token embedding: our LM head is tied to it, so it is
    loaded through the embedding and listed nowhere.
    """
    converted: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unused: list[str] = []
    for key, tensor in tensors.items():
        name = key[len("transformer."):] if key.startswith("transformer.") else key
        block = _BLOCK.match(name)
        ours = None
        if name in _TOP:
            ours = _TOP[name]
        elif block:
            layer, rest = block.groups()
            part, _, kind = rest.rpartition(".")
            if part in _IN_BLOCK:
                ours = f"stack.blocks.{layer}.{_IN_BLOCK[part]}.{kind}"
                if rest in _CONV1D:
                    tensor = tensor.t().contiguous()  # Conv1D (in, out) -> Linear (out, in)
        if name == "lm_head.weight":
            embedding = tensors.get("transformer.wte.weight", tensors.get("wte.weight"))
            if embedding is None or not torch.equal(tensor, embedding):
                raise ZooError(f"{path}: tensor 'lm_head.weight' differs from the token embedding; zoo's lm head "
                               f"is tied to it, so an untied GPT-2 cannot be converted")
        elif ours is None:
            unused.append(key)   # e.g. the causal-mask buffers old checkpoints carry (h.N.attn.bias)
        else:
            converted[ours], origin[ours] = tensor, key
    return converted, origin, unused
