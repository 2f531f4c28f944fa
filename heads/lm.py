"""Language-model head: output projection tied to the token embedding, shifted cross-entropy,
and the step protocol over the causal backbone's KV cache.

Three ways to decode, all giving the same tokens: a dynamic cache (grows by concatenation),
a static cache preallocated for prompt + ``max_new_tokens`` positions (fixed shapes, written in
place at a position tensor, so ``torch.compile`` of the backbone captures one graph for the
prompt and one for all decode positions, and ``zoo export`` traces one decoder step), or no cache (every
step reruns the backbone over the whole sequence; the reference the caches are tested
against).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from heads.base import Head, SoftOutputs
from zoo.features import Features
from zoo.layers.attention import KVCache
from zoo.registry import HEADS


@dataclass
class LMState:
    """Generation state: the KV cache, or (without cache) every token so far and its mask."""

    start: torch.Tensor                 # (B, T0) prompt fed by the first step
    start_mask: torch.Tensor            # (B, T0) bool, False = left padding
    cache: KVCache | None
    tokens: torch.Tensor | None = None  # uncached: (B, T) so far
    mask: torch.Tensor | None = None
    started: bool = False               # the prompt has been fed

    def reorder(self, index: torch.Tensor) -> None:
        self.start, self.start_mask = self.start[index], self.start_mask[index]
        if self.cache is not None:
            self.cache.reorder(index)
        if self.tokens is not None:
            self.tokens, self.mask = self.tokens[index], self.mask[index]


class LMHead(Head):
    """Next-token logits through the (tied) embedding matrix."""

    accepts = ("text",)
    requires_causal = True

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.proj = nn.Linear(embedding.embedding_dim, embedding.num_embeddings, bias=False)
        self.proj.weight = embedding.weight  # tied: one tensor, saved once

    def forward(self, features: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"logits": self.proj(features.tokens)}  # (B, T, V)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Shifted cross-entropy: position t predicts token t+1; padding (mask False) is ignored.

        ``batch["targets"]`` (B, T) may give the next tokens explicitly (packed blocks);
        otherwise they are the inputs shifted by one. ``weight``: the number of predicted tokens
        (the trainer weighs accumulated micro-batches by it).
        """
        logits, targets, valid = _predictions(outputs["logits"].float(), batch)
        labels = targets.masked_fill(~valid, -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return {"loss": loss, "weight": valid.sum()}

    def soft_outputs(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> SoftOutputs:
        """The logits (N, V) of the N positions the loss scores."""
        logits, _, valid = _predictions(outputs["logits"], batch)
        return SoftOutputs(logits[valid])

    def decode(self, outputs: dict[str, torch.Tensor], **options: Any) -> list[list[int]]:
        """The most likely next token after each position, per row."""
        return outputs["logits"].argmax(dim=-1).tolist()

    # ---- step protocol -------------------------------------------------------------------
    def init_state(self, model: nn.Module, batch: dict[str, Any], use_cache: bool = True,
                   static_cache: bool = False, max_new_tokens: int = 0) -> LMState:
        """Prompts (B, T0), left-padded when their lengths differ (mask False on padding)."""
        prompt = batch["inputs"]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones_like(prompt, dtype=torch.bool)
        if mask.shape[1] and bool((~mask[:, -1]).any()):
            raise ValueError("batched prompts must be left-padded (the last position real in every row)")
        cache = None
        if use_cache:
            cache = model.backbone.new_cache(prompt.shape[1] + max_new_tokens if static_cache else None)
        return LMState(prompt, mask, cache)

    def step(self, model: nn.Module, tokens: torch.Tensor, state: LMState) -> tuple[torch.Tensor, LMState]:
        """Feed (B, T) tokens; return the logits (B, V) of the last position."""
        first = not state.started
        state.started = True
        mask = state.start_mask if first else torch.ones_like(tokens, dtype=torch.bool)
        if state.cache is not None:
            features = model.backbone(tokens, mask, cache=state.cache)
        else:
            state.tokens = tokens if first else torch.cat([state.tokens, tokens], dim=1)
            state.mask = mask if first else torch.cat([state.mask, mask], dim=1)
            features = model.backbone(state.tokens, state.mask)
        return self.proj(features.tokens[:, -1]), state


def _predictions(logits: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (B, T', V) of the positions that predict a token, their next tokens (B, T'), valid (B, T'))."""
    if "targets" in batch:
        targets = batch["targets"]
        return logits, targets, batch.get("target_mask", torch.ones_like(targets, dtype=torch.bool))
    targets = batch["inputs"][:, 1:]
    mask = batch.get("mask")
    valid = torch.ones_like(targets, dtype=torch.bool) if mask is None else mask[:, 1:] & mask[:, :-1]
    return logits[:, :-1], targets, valid


@HEADS.register("lm", accepts=("text",), causal=True)
def lm(backbone: nn.Module) -> LMHead:
    """Language-model head tied to the backbone's token embedding; refuses non-causal backbones."""
    LMHead.check_backbone(backbone)     # modality first, then causality, before reading its embedding
    return LMHead(backbone.embed)
