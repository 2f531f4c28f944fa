"""Sentiment as an exported graph: token ids (B, T) and mask (B, T) -> class ``logits`` (B, C).

The sidecar keeps the tokenizer (copied beside the graph) and the ``preprocessing`` (max_len, EOS) that
:func:`tasks.sentiment.task.encode` reads, so exported predictions tokenise exactly as ``task.predict``.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

from torch import nn

from tasks.engine.export import Exported, Graph, Traced, softmax
from tasks.sentiment.task import encode
from zoo.errors import ZooError

TRACED_TEXTS = ["an example sentence to trace the graph with", "short one"]   # two lengths: batch and tokens


def graph(model: nn.Module) -> Graph:
    """The classifier's logits over token ids and their mask, batch and length dynamic."""
    inputs, mask = encode(model, TRACED_TEXTS)
    return Graph(Traced(model, lambda out: {"logits": out["logits"]}), {"inputs": inputs, "mask": mask},
                 {"inputs": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}})


def predict(exported: Exported, inputs: Sequence[str], batch_size: int = 64, **options: Any) -> list[dict[str, Any]]:
    """Per text ``{"label", "probability", "probabilities": {label: p}}``, as ``SentimentTask.predict``."""
    for number, text in enumerate(inputs, 1):
        if not text.strip():
            raise ZooError(f"input {number} is an empty text")
    reader = SimpleNamespace(tokenizer=exported.tokenizer(), preprocessing=exported.preprocessing)
    labels = exported.sidecar["labels"]
    results = []
    for start in range(0, len(inputs), batch_size):
        ids, mask = encode(reader, list(inputs[start:start + batch_size]))
        probabilities = softmax(exported.run(inputs=ids.numpy(), mask=mask.numpy())["logits"])  # (B, C)
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append({"label": labels[best], "probability": row[best], "probabilities": dict(zip(labels, row))})
    return results
