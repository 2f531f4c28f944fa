"""Sentiment metrics: accuracy and macro-F1 (torchmetrics), loss, and the confusion matrix as JSON + PNG.

The model's classes are its head's ``labels``; a data set whose class names differ is mapped
onto them by name (``SST-2``'s negative/positive onto a model trained on the built-in set),
and a class the model does not know is an error naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from tasks.engine.batching import length_sorted_batches
from tasks.engine.confusion import write_confusion_matrix
from tasks.engine.evaluation import EvalOptions, run_batches


def classify(model: torch.nn.Module, samples: list[dict], collate: Callable[[list[dict]], dict],
             batch_size: int, options: EvalOptions = EvalOptions()) -> torch.Tensor:
    """(N, C) float logits of ``samples`` in their order, batched by similar length."""
    logits = torch.empty(len(samples), len(model.head.labels))
    for chunk, scores in run_batches(model, length_sorted_batches([len(s["text"]) for s in samples], batch_size),
                                     lambda chunk: collate([samples[i] for i in chunk]),
                                     lambda batch: model(batch)["logits"].float().cpu(), options):
        logits[chunk] = scores
    return logits


def metrics(logits: torch.Tensor, target: torch.Tensor, labels: list[str],
            out: str | Path | None = None, subject: str = "") -> dict[str, float]:
    """``accuracy``, ``macro_f1`` and ``loss`` of (N, C) logits against (N,) targets.

    With ``out``, also writes the confusion matrix there (rows: true class, columns: predicted; ``subject``,
    e.g. "test, step 300", in the picture's title).
    """
    from torchmetrics.functional.classification import (multiclass_accuracy,  # slow import: only when needed
                                                        multiclass_confusion_matrix, multiclass_f1_score)

    num_classes = len(labels)
    preds = logits.argmax(dim=-1)
    result = {
        "accuracy": float(multiclass_accuracy(preds, target, num_classes, average="micro")),
        "macro_f1": float(multiclass_f1_score(preds, target, num_classes, average="macro")),
        "loss": float(F.cross_entropy(logits, target)),
    }
    if out is not None:
        write_confusion_matrix(multiclass_confusion_matrix(preds, target, num_classes), labels, Path(out), subject)
    return result
