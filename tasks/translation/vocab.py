"""Tokenizers of a translation model and the collate function that applies them.

By default one joint sentencepiece model covers source and target (shared subwords for names
and numbers; the decoder may then share the encoder's embedding). With ``--separate-vocab``
each side gets its own: the source one is the model's ``tokenizer`` (``tokenizer.model`` in
the checkpoint) and the target one travels base64-encoded in the model's ``preprocessing``
(``config.json``), because a ``ZooModel`` stores a single tokenizer file.
"""
from __future__ import annotations

import base64
from typing import Any

import torch

from zoo.texts import DEFAULT_MAX_LEN, TARGET_KEY, tokenizers
from zoo.tokenizer import BaseTokenizer, Tokenizer


def train_tokenizers(pairs: list[tuple[str, str]], vocab_size: int, separate: bool) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers trained on the pairs: the same object unless ``separate``."""
    sources = [source for source, _ in pairs]
    targets = [target for _, target in pairs]
    if separate:
        return Tokenizer.train(sources, vocab_size), Tokenizer.train(targets, vocab_size)
    joint = Tokenizer.train(sources + targets, vocab_size)
    return joint, joint


def preprocessing(source: BaseTokenizer, target: BaseTokenizer, max_len: int) -> dict[str, Any]:
    """The model's ``preprocessing``: ``max_len`` and, when it differs from the source one, the target tokenizer."""
    settings: dict[str, Any] = {"max_len": max_len}
    if target is not source:
        settings[TARGET_KEY] = base64.b64encode(target.proto).decode("ascii")
    return settings


class PairCollate:
    """Sample dicts ``{"source", "target"}`` -> the batch of docs/design.md.

    ``inputs``/``mask`` (B, S) source ids; ``targets``/``target_mask`` (B, L) target ids without
    BOS/EOS, right-padded (the seq2seq head frames them). Both sides are cut to ``max_len``
    tokens (the target to ``max_len - 1``, leaving room for the EOS the head appends).
    """

    def __init__(self, source: BaseTokenizer, target: BaseTokenizer, max_len: int) -> None:
        self.source, self.target, self.max_len = source, target, max_len

    def __call__(self, samples: list[dict[str, str]]) -> dict[str, torch.Tensor]:
        inputs, mask = self.source.batch([s["source"] for s in samples], max_len=self.max_len)
        targets, target_mask = self.target.batch([s["target"] for s in samples], max_len=self.max_len - 1)
        return {"inputs": inputs, "mask": mask, "targets": targets, "target_mask": target_mask}


def collate_for(model: torch.nn.Module) -> PairCollate:
    """The collate function of a translation model (its tokenizers and ``max_len``)."""
    source, target = tokenizers(model)
    return PairCollate(source, target, int(model.preprocessing.get("max_len", DEFAULT_MAX_LEN)))
