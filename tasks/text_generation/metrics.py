"""Language-model metrics: loss (nats per token), perplexity and bits per character.

Bits per character divides the total negative log-likelihood by the characters of the
*detokenized* text the predicted tokens spell (what the tokenizer gives back, after its
normalisation), so models with different tokenizers are compared on the same text; each
end-of-document token counts as one character, the boundary a character model also predicts.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zoo.tokenizer import Tokenizer


def detokenized_characters(tokenizer: Tokenizer, ids: torch.Tensor) -> int:
    """Characters spelled by a stream of token ids: each document decoded on its own, plus one per EOS."""
    ids = ids.tolist()
    characters, start = 0, 0
    for index, token in enumerate(ids + [tokenizer.eos_id]):
        if token == tokenizer.eos_id:
            characters += len(tokenizer.decode(ids[start:index]))
            start = index + 1
    return characters + ids.count(tokenizer.eos_id)


def lm_metrics(nats: float, tokens: int, characters: int) -> dict[str, float]:
    """``loss`` (nats per token), ``perplexity`` and ``bits_per_char`` from totals."""
    loss = nats / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
            "bits_per_char": nats / max(characters, 1) / math.log(2), "tokens": tokens, "characters": characters}


@torch.no_grad()
def evaluate_blocks(model: torch.nn.Module, blocks: torch.Tensor, batch_size: int,
                    precision: str = "fp32") -> dict[str, float]:
    """Metrics of ``model`` on packed blocks (N, T + 1): every token after the first is predicted once."""
    device = next(model.parameters()).device
    nats = 0.0
    for chunk in blocks.split(batch_size):
        chunk = chunk.to(device)
        batch = {"inputs": chunk[:, :-1], "targets": chunk[:, 1:]}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(batch)["logits"]  # (B, T, V)
        nats += F.cross_entropy(logits.float().flatten(0, 1), batch["targets"].flatten(), reduction="sum").item()
    targets = blocks[:, 1:].flatten()  # (N * T,): the stream after its first token, in order
    return lm_metrics(nats, targets.numel(), detokenized_characters(model.tokenizer, targets))
