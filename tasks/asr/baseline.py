"""The ASR baseline: the transcript of the nearest training clip, a nearest-template recogniser (`zoo demo`).

Every clip becomes a fixed-size log-mel image: the speech encoders' own front end
(:class:`zoo.stems.LogMel`, 80 bins, normalised per utterance) resampled to :data:`FRAMES` frames,
so clips of any length compare by Euclidean distance. Each test clip takes the transcript of the
nearest of at most :data:`TEMPLATES` training clips (evenly spaced through the split), scored by
the task's own :func:`error_rates` (jiwer WER and CER on normalised text).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tasks.asr.evaluation import error_rates
from zoo.stems import LogMel

NAME = "nearest-template transcript"
FRAMES = 64         # time steps of every clip's mel image
TEMPLATES = 1000    # training clips compared with (a subsample keeps the baseline to seconds)


@torch.no_grad()
def mel_images(dataset: Dataset, rows: list[int]) -> torch.Tensor:
    """(len(rows), 80 * FRAMES) float: the log-mel image of each clip ``rows`` names, resampled in time."""
    front_end = LogMel()
    images = []
    for i in rows:
        feats, _ = front_end(dataset[i]["audio"][None], None)                    # (1, T, 80)
        images.append(F.interpolate(feats.transpose(1, 2), size=FRAMES, mode="linear").flatten())
    return torch.stack(images)


def nearest_template_texts(train: Dataset, test: Dataset, templates: int = TEMPLATES) -> list[str]:
    """For each clip of ``test``: the text of the nearest of ``templates`` ``train`` clips (by mel image)."""
    step = max(1, len(train) // templates)
    rows = list(range(0, len(train), step))[:templates]
    texts = [train.entries[i].text for i in rows]
    nearest = torch.cdist(mel_images(test, list(range(len(test)))), mel_images(train, rows)).argmin(dim=1)
    return [texts[j] for j in nearest.tolist()]


def score(train: Dataset, test: Dataset) -> dict[str, Any]:
    """The task's error rates of ``test`` transcribed by its nearest ``train`` templates."""
    return error_rates(nearest_template_texts(train, test), [entry.text for entry in test.entries])
