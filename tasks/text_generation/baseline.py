"""The text generation baseline: an add-one (Laplace) character bigram model (`zoo demo`).

The alphabet is every character of the training documents, one symbol for characters never seen
there and one for the document boundary (what the model's end-of-document token predicts). Each
character, and each document's end, is predicted from the character before it (a document's first
from the boundary): P(c | p) = (count(p, c) + 1) / (count(p) + V) over the V symbols. Scored as the
task scores a model (:func:`lm_metrics`): total negative log-likelihood over the raw characters
plus one boundary per document, ``len(text) + 1`` each, so ``bits_per_char`` compares directly.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from tasks.text_generation.metrics import lm_metrics

NAME = "add-one character bigram"
UNKNOWN, BOUNDARY = 0, 1        # symbol ids; characters of the training alphabet follow


def symbols(texts: Sequence[str], alphabet: dict[str, int]) -> np.ndarray:
    """The symbol stream of ``texts``: the boundary, then each document's characters and a boundary."""
    stream = [BOUNDARY]
    for text in texts:
        stream.extend(alphabet.get(c, UNKNOWN) for c in text)
        stream.append(BOUNDARY)
    return np.array(stream, dtype=np.int64)


def bigram_nats(train_texts: Sequence[str], test_texts: Sequence[str]) -> float:
    """Total negative log-likelihood (nats) of every symbol after the first of ``test_texts``' stream."""
    alphabet = {c: i + 2 for i, c in enumerate(sorted(set("".join(train_texts))))}
    size = len(alphabet) + 2
    counts = np.ones((size, size))                                     # (previous, next), add-one
    train = symbols(train_texts, alphabet)
    np.add.at(counts, (train[:-1], train[1:]), 1)
    log_p = np.log(counts) - np.log(counts.sum(axis=1, keepdims=True))  # (V, V) log P(next | previous)
    test = symbols(test_texts, alphabet)
    return float(-log_p[test[:-1], test[1:]].sum())


def score(train: Dataset, test: Dataset) -> dict[str, Any]:
    """The task's metrics of the bigram model counted on ``train``'s documents, on ``test``'s (its tokens
    are the characters, so ``loss`` and ``perplexity`` are per character)."""
    characters = sum(len(text) + 1 for text in test.texts)
    return lm_metrics(bigram_nats(train.texts, test.texts), characters, characters)
