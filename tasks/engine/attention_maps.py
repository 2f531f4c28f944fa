"""Attention weights of the shared :class:`zoo.layers.attention.Attention` modules, recorded during a forward.

The fused ``scaled_dot_product_attention`` kernel never materialises its weights, so a forward hook
recomputes them from each module's input with its own projections: ``qkv`` (rotary positions applied
when the call passes them) for self-attention, ``q`` against the precomputed context keys for
cross-attention; the call's boolean mask (True = attend) and ``is_causal`` are honoured. Used by the
explanations of image classification (attention rollout), translation (cross-attention alignment) and
text generation (attention to the prompt).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn


@contextmanager
def recorded_attention(modules: Sequence[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Within the block, every call of ``modules`` appends its (B, nh, Tq, Tk) softmax weights (fp32) to
    the yielded list, in call order."""
    weights: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: torch.Tensor) -> None:
        x = args[0] if args else kwargs["x"]
        weights.append(attention_weights(module, x.detach(), **kwargs))

    hooks = [module.register_forward_hook(record, with_kwargs=True) for module in modules]
    try:
        yield weights
    finally:
        for hook in hooks:
            hook.remove()


def attention_weights(attn: nn.Module, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                      is_causal: bool = False, context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                      rope: Any = None, positions: torch.Tensor | None = None, **unused: Any) -> torch.Tensor:
    """(B, nh, Tq, Tk) softmax weights of attention module ``attn`` for its (B, Tq, D) input ``x``.

    A call with a KV cache is not supported (explanations run the whole sequence at once).
    """
    if unused.get("cache") is not None:
        raise ValueError("attention weights are recomputed without a KV cache; run the full sequence")
    batch, steps, _ = x.shape
    if attn.cross:
        q = attn.q(x).float().view(batch, steps, attn.heads, attn.head_dim).transpose(1, 2)  # (B, nh, Tq, hs)
        k = context_kv[0].detach().float()                                                   # (B, nh, Tk, hs)
    else:
        qkv = attn.qkv(x).float().view(batch, steps, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]                                                                # (B, nh, T, hs)
        if rope is not None:
            q, k = rope(q, positions), rope(k, positions)
    scores = q @ k.transpose(-2, -1) * attn.score_scale()                                    # (B, nh, Tq, Tk)
    if attn.lsa:
        mask = attn.locality_mask(mask, steps, scores.device)
    if is_causal:
        keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)
