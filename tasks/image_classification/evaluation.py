"""Image classification metrics: top-1, top-5, per-class accuracy (torchmetrics), loss, confusion matrix.

``per_class_accuracy`` maps each class name to the fraction of its images classified
correctly (recall), or ``None`` for a class with no image in the evaluated set. The
confusion matrix (JSON + PNG, rows true, columns predicted) is drawn by
:func:`tasks.engine.confusion.write_confusion_matrix`, as for sentiment.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

from tasks.engine.confusion import write_confusion_matrix
from tasks.engine.evaluation import EvalOptions, run_batches

TOP_K = 5


def classify(model: torch.nn.Module, dataset: Dataset, collate: Callable[[list[dict]], dict],
             batch_size: int, options: EvalOptions = EvalOptions()) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) float logits and (N,) labels of every sample of ``dataset``, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=options.workers, collate_fn=collate)
    logits, labels = [], []
    for batch, scores in run_batches(model, loader, lambda batch: {"inputs": batch["inputs"]},
                                     lambda batch: model(batch)["logits"].float().cpu(), options):
        logits.append(scores)
        labels.append(batch["labels"])
    return torch.cat(logits), torch.cat(labels)


def metrics(logits: torch.Tensor, target: torch.Tensor, labels: list[str],
            out: str | Path | None = None, subject: str = "") -> dict[str, Any]:
    """``top1``, ``top5``, ``loss`` and ``per_class_accuracy`` of (N, C) logits against (N,) class ids.

    With ``out``, also writes ``confusion_matrix.json`` and ``confusion_matrix.png`` there (``subject``,
    e.g. "test, step 300", in its title).
    ``top5`` is top-C accuracy (1.0) when there are fewer than five classes.
    """
    num_classes = len(labels)
    matrix = multiclass_confusion_matrix(logits.argmax(dim=-1), target, num_classes)  # (C, C) true x predicted
    counts = matrix.sum(dim=1)
    per_class = {name: (float(matrix[i, i] / counts[i]) if counts[i] > 0 else None)
                 for i, name in enumerate(labels)}
    result = {
        "top1": float(multiclass_accuracy(logits, target, num_classes, average="micro", top_k=1)),
        "top5": float(multiclass_accuracy(logits, target, num_classes, average="micro",
                                          top_k=min(TOP_K, num_classes))),
        "loss": float(F.cross_entropy(logits, target)),
        "per_class_accuracy": per_class,
    }
    if out is not None:
        write_confusion_matrix(matrix, labels, Path(out), subject)
    return result
