"""The captioning baseline: the first caption of the nearest training image in pixels (`zoo demo`).

The nearest-neighbour captions of :mod:`tasks.captioning.evaluation` (32x32 RGB thumbnails,
Euclidean distance), which `zoo eval` also reports as ``baseline_*``, scored by the task's
:func:`scores` (sacrebleu BLEU, chrF, exact match against every reference caption).
"""
from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from tasks.captioning.evaluation import nearest_neighbour_captions, scores

NAME = "nearest-neighbour caption"


def score(train: Dataset, test: Dataset) -> dict[str, Any]:
    """The task's scores of ``test``'s images captioned from their nearest ``train`` image."""
    references = [test[i]["captions"] for i in range(len(test))]
    return scores(nearest_neighbour_captions(train, test), references)
