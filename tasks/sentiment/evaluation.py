"""Sentiment metrics: accuracy and macro-F1 (torchmetrics), loss, and the confusion matrix as JSON + PNG.

The model's classes are its head's ``labels``; a data set whose class names differ is mapped
onto them by name (``SST-2``'s negative/positive onto a model trained on the built-in set),
and a class the model does not know is an error naming it.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from tasks.engine.confusion import write_confusion_matrix


def label_mapping(data_classes: list[str], model_labels: list[str], source: str) -> torch.Tensor:
    """(C_data,) long: the model's class id of each of the data set's class ids, matched by name."""
    index = {name: i for i, name in enumerate(model_labels)}
    unknown = [name for name in data_classes if name not in index]
    if unknown:
        raise ValueError(f"{source}: class(es) {unknown} are not among the model's labels {model_labels}; "
                         f"give classes=... in the data SPEC to name them as the model does")
    return torch.tensor([index[name] for name in data_classes], dtype=torch.long)


@torch.no_grad()
def classify(model: torch.nn.Module, samples: list[dict], collate: Callable[[list[dict]], dict],
             batch_size: int, precision: str = "fp32") -> torch.Tensor:
    """(N, C) float logits of ``samples`` in their order, batched by similar length."""
    device = next(model.parameters()).device
    order = sorted(range(len(samples)), key=lambda i: len(samples[i]["text"]))
    logits = torch.empty(len(samples), len(model.head.labels))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    was_training = model.training
    model.eval()
    with autocast:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate([samples[i] for i in chunk])
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            logits[chunk] = model(batch)["logits"].float().cpu()
    model.train(was_training)
    return logits


def metrics(logits: torch.Tensor, target: torch.Tensor, labels: list[str],
            out: str | Path | None = None) -> dict[str, float]:
    """``accuracy``, ``macro_f1`` and ``loss`` of (N, C) logits against (N,) targets.

    With ``out``, also writes the confusion matrix there (rows: true class, columns: predicted).
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
        write_confusion_matrix(multiclass_confusion_matrix(preds, target, num_classes), labels, Path(out))
    return result
