"""Language-model metrics: loss (nats per token), perplexity and bits per character.

Bits per character divides the total negative log-likelihood by the characters of the *raw*
held-out text that the scored tokens stand for, so models with different tokenizers (and
different normalisation: folded spaces, NFKC) are compared on the same text. Each token
stands for the raw characters from the end of the token before it to its own end (the
tokenizer's offset mapping), each end-of-document token for what is left of its document plus
one character: the boundary a character model also predicts. A document's tokens and EOS so
stand for exactly ``len(text) + 1`` characters.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from tasks.engine.evaluation import EvalOptions, run_batches
from zoo.tokenizer import BaseTokenizer


def raw_characters(tokenizer: BaseTokenizer, texts: Sequence[str]) -> tuple[list[int], list[int]]:
    """The token stream of ``texts`` (each document's ids, then EOS) and the raw characters of
    each of its tokens."""
    ids: list[int] = []
    characters: list[int] = []
    for text in texts:
        tokens, spans = tokenizer.offsets(text)
        end = 0
        for token, (_, stop) in zip(tokens, spans):
            ids.append(token)
            characters.append(max(stop - end, 0))
            end = max(end, stop)
        ids.append(tokenizer.eos_id)
        characters.append(len(text) - end + 1)
    return ids, characters


def lm_metrics(nats: float, tokens: int, characters: int) -> dict[str, float]:
    """``loss`` (nats per token), ``perplexity`` and ``bits_per_char`` from totals."""
    loss = nats / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
            "bits_per_char": nats / max(characters, 1) / math.log(2), "tokens": tokens, "characters": characters}


def evaluate_blocks(model: torch.nn.Module, blocks: torch.Tensor, texts: Sequence[str], batch_size: int,
                    options: EvalOptions = EvalOptions()) -> dict[str, float]:
    """Metrics of ``model`` on packed blocks (N, T + 1) of the documents ``texts``: every token
    after the first is predicted once; characters are those of ``texts`` the targets stand for."""
    nats = 0.0
    for _, (logits, targets) in run_batches(model, blocks.split(batch_size),
                                            lambda chunk: {"inputs": chunk[:, :-1], "targets": chunk[:, 1:]},
                                            lambda batch: (model(batch)["logits"], batch["targets"]), options):
        # (B, T, V) logits, scored outside autocast
        nats += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum").item()
    targets = blocks[:, 1:].flatten()  # (N * T,): the stream after its first token, in order
    ids, characters = raw_characters(model.tokenizer, texts)
    if ids[1:targets.numel() + 1] != targets.tolist():
        raise ValueError("the blocks are not the token stream of these texts; pack them from the same documents")
    return lm_metrics(nats, targets.numel(), sum(characters[1:targets.numel() + 1]))
