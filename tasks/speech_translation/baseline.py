"""The speech translation baseline: the translation of the nearest training clip (`zoo demo`).

ASR's nearest-template recogniser (:func:`tasks.asr.baseline.nearest_template_texts`: fixed-size
log-mel images, Euclidean distance, a subsample of the training clips) returning the template's
translation, scored by the task's :func:`scores` (sacrebleu BLEU, chrF, exact match).
"""
from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from tasks.asr.baseline import nearest_template_texts
from tasks.speech_translation.task import references
from tasks.translation.evaluation import scores

NAME = "nearest-template translation"


def score(train: Dataset, test: Dataset) -> dict[str, Any]:
    """The task's scores of ``test`` translated by its nearest ``train`` templates."""
    return scores(nearest_template_texts(train, test), references(test))
