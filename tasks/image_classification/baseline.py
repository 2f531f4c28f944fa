"""The image classification baseline: logistic regression on raw pixels (`zoo demo`'s `baseline` column).

Every image becomes an RGB thumbnail of at most :data:`THUMB` pixels a side (the training split's
first image's size when smaller: the 8x8 digits stay 8x8), its pixels in [0, 1] one feature each;
scikit-learn's logistic regression over them is scored by the task's own :func:`metrics` (top-1 on
the regression's class log-probabilities).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tasks.engine.baselines import logistic_regression_logits
from tasks.image_classification.evaluation import metrics
from tasks.image_classification.formats import align_classes

NAME = "logistic regression on pixels"
THUMB = 32


def pixels(dataset: Dataset, side: int) -> tuple[np.ndarray, np.ndarray]:
    """((N, side * side * 3) float pixels in [0, 1] of every image of ``dataset`` resized to ``side``,
    (N,) class ids)."""
    samples = [dataset[i] for i in range(len(dataset))]
    rows = [np.asarray(s["image"].convert("RGB").resize((side, side)), dtype=np.float32).ravel() for s in samples]
    return np.stack(rows) / 255, np.array([s["label"] for s in samples], dtype=np.int64)


def score(train: Dataset, test: Dataset) -> dict[str, Any]:
    """The task's metrics of the pixel logistic regression fit on ``train``, on ``test``."""
    classes = list(train.classes)
    align_classes(test, classes)
    side = min(THUMB, *train[0]["image"].size)
    features, labels = pixels(train, side)
    test_features, target = pixels(test, side)
    logits = logistic_regression_logits(features, labels, test_features, len(classes))  # (N, C)
    return metrics(logits, torch.from_numpy(target), classes)
