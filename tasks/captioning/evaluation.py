"""Captions of images through ``zoo.generation``, the field's corpus scores (sacrebleu), and the
nearest-neighbour baseline every captioning result is read against.

BLEU and chrF are sacrebleu's corpus scores (0-100) against every reference caption of each image
(translation's :func:`~tasks.translation.evaluation.scores`, several references a hypothesis). CIDEr
is not reported: no maintained package providing it is installed here (``pycocoevalcap`` is not),
and a home-grown one would not be comparable.

The baseline captions each image with the first caption of the training image closest in pixels:
every image shrunk (area-averaged) to a ``THUMB`` x ``THUMB`` RGB thumbnail, Euclidean distance
(Torralba et al.'s "80 million tiny images" recipe; full-resolution distances would cost 16x
more memory and compare noise). It needs no model, only the training split of the same source.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tasks.engine.batching import in_order, ordered_chunks
from tasks.engine.evaluation import EvalOptions, run_batches
from tasks.engine.images import stored_transform
from tasks.image_classification.transforms import build_transform
from tasks.translation.evaluation import scores
from zoo.errors import ZooError

THUMB = 32
BASELINE_SPLITS = ("validation", "test")   # a baseline of the training split would find each image itself


def caption_batches(model: torch.nn.Module, count: int, load: Callable[[int], Any], batch_size: int,
                    options: EvalOptions = EvalOptions(), max_new_tokens: int | None = None,
                    **generation: Any) -> list[str]:
    """Captions of ``count`` images, ``load(i)`` giving the i-th (a path, PIL image, uint8 (3, H, W)
    tensor...), in batches of ``batch_size`` under ``options``' precision; ``generation`` goes to
    ``model.generate`` (``beams``, ``temperature``...). ``max_new_tokens`` None: the model's ``max_len``."""
    if model.tokenizer is None:
        raise ZooError("this model stores no tokenizer; captioning models come from `zoo train captioning`")
    transform = build_transform(stored_transform(model, "captioning"), train=False)
    budget = max_new_tokens or int(model.preprocessing.get("max_len", 64))

    def batch_of(rows: list[int]) -> dict[str, torch.Tensor]:
        return {"inputs": torch.stack([transform(load(i)) for i in rows])}  # (B, 3, S, S)

    def generate(batch: dict[str, torch.Tensor]) -> list[str]:
        return [model.tokenizer.decode(ids) for ids in model.generate(batch, max_new_tokens=budget, **generation)]

    return in_order(run_batches(model, ordered_chunks(list(range(count)), batch_size), batch_of, generate, options))


def caption_dataset(model: torch.nn.Module, dataset: Dataset, batch_size: int, options: EvalOptions = EvalOptions(),
                    **generation: Any) -> tuple[list[str], list[list[str]]]:
    """(caption of each sample, its reference captions) of every sample of ``dataset``."""
    references: list[list[str]] = [[] for _ in range(len(dataset))]

    def load(i: int) -> torch.Tensor:
        sample = dataset[i]
        references[i] = sample["captions"]
        return sample["image"]

    return caption_batches(model, len(dataset), load, batch_size, options, **generation), references


def thumbnails(dataset: Dataset, side: int = THUMB) -> tuple[torch.Tensor, list[list[str]]]:
    """((N, 3 * side * side) float pixels in [0, 1] of every sample, area-averaged, and its captions)."""
    pixels, captions = [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        image = sample["image"][None].float() / 255  # (1, 3, H, W)
        pixels.append(F.interpolate(image, size=(side, side), mode="area").flatten())
        captions.append(sample["captions"])
    return torch.stack(pixels), captions


def nearest_neighbour_captions(train: Dataset, images: Dataset, side: int = THUMB, chunk: int = 256) -> list[str]:
    """For each sample of ``images``: the first caption of the ``train`` sample nearest in pixels."""
    bank, captions = thumbnails(train, side)
    queries, _ = thumbnails(images, side)
    nearest = torch.cat([torch.cdist(queries[i:i + chunk], bank).argmin(dim=1) for i in range(0, len(queries), chunk)])
    return [captions[j][0] for j in nearest.tolist()]


def baseline_scores(dataset: Dataset) -> dict[str, float]:
    """``baseline_bleu``/``baseline_chrf``/``baseline_exact_match`` of the nearest-neighbour captions of a
    validation or test split (its ``reader("train")`` gives the training images); {} for other splits or
    sources without a reader. Computed once per dataset object (the trainer scores one set many times)."""
    reader = getattr(dataset, "reader", None)
    if reader is None or getattr(dataset, "split", None) not in BASELINE_SPLITS:
        return {}
    cached = getattr(dataset, "baseline", None)
    if cached is None:
        references = [dataset[i]["captions"] for i in range(len(dataset))]
        guessed = nearest_neighbour_captions(reader("train"), dataset)
        cached = {f"baseline_{key}": value for key, value in scores(guessed, references).items()}
        dataset.baseline = cached
    return dict(cached)
