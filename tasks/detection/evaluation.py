"""Running a detector over samples, and the COCO metrics of its detections.

Metrics come from torchmetrics' ``MeanAveragePrecision`` with the ``faster_coco_eval`` backend
(COCO's evaluator): ``map`` (AP averaged over IoU .50:.95), ``map_50``, ``map_75`` and
``mar_100`` (recall with at most 100 detections per image), all fractions in [0, 1]. They are
scored against the data set's own boxes in the image's original pixels: the ground truth is the
annotation as read (no evaluation transform resizes or drops any of it, so a tiny object the
model misses counts as a miss), and the detections are mapped back from the resized image the
model saw. A data set whose class names differ from the model's is mapped onto them by name; a
class the model does not know is an error naming it.

A backbone whose output depends on padding (``backbone.padding_sensitive``, e.g. one with
global attention over a padded canvas) is fed batches of one image size only, so the
predictions do not depend on which images share its batch.

With ``options.out`` (``zoo eval --out DIR``, and every evaluation of a training run into its run
folder) the first :data:`~tasks.detection.drawing.DRAWN_PER_EVALUATION` images are drawn into
``DIR/detections/``: ground truth on the left, detections scored at least :data:`DRAWN_SCORE` on the right.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torchmetrics.detection import MeanAveragePrecision

from tasks.detection.drawing import DRAWN_PER_EVALUATION, draw_truth_and_predictions
from tasks.engine.evaluation import EvalOptions, run_batches

DRAWINGS = "detections"      # `zoo eval --out DIR` (and each run folder) get DIR/detections/*.png
DRAWN_SCORE = 0.3            # detections drawn in those pictures: the `zoo predict` default threshold
EVAL_SCORE_THRESHOLD = 0.01  # keep low-scored detections for AP (the precision-recall curve needs them)
EVAL_MAX_DETECTIONS = 100
MAX_WAITING_BATCHES = 8  # same-size grouping holds at most this many batches of samples before running one


def batches(samples: Iterable[dict], batch_size: int, same_size: bool) -> Iterator[list[tuple[int, dict]]]:
    """``(position, sample)`` batches of at most ``batch_size``; with ``same_size``, each of one image size.

    Same-size grouping keeps one open batch per size and runs a batch when it is full, or, once
    more than ``MAX_WAITING_BATCHES`` batches' worth of samples wait, the oldest open batch (so
    memory stays bounded on sources where every image has its own size).
    """
    numbered = enumerate(samples)
    if not same_size:
        while chunk := list(itertools.islice(numbered, batch_size)):
            yield chunk
        return
    open_batches: dict[tuple[int, ...], list[tuple[int, dict]]] = {}
    waiting = 0
    for position, sample in numbered:
        size = tuple(sample["image"].shape[-2:])
        open_batches.setdefault(size, []).append((position, sample))
        waiting += 1
        if len(open_batches[size]) < batch_size:
            if waiting <= MAX_WAITING_BATCHES * batch_size:
                continue
            size = next(iter(open_batches))  # too many waiting: run the batch opened first
        chunk = open_batches.pop(size)
        waiting -= len(chunk)
        yield chunk
    yield from open_batches.values()


@torch.no_grad()
def detect(model: torch.nn.Module, samples: Iterable[dict], collate: Callable[[list[dict]], dict],
           batch_size: int, options: EvalOptions = EvalOptions(), **decode_options: Any
           ) -> Iterator[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
    """Yield (the sample as fed, its detections on CPU) for every sample, in order, ``batch_size`` at a time.

    The sample as fed: ``boxes`` and ``labels`` after the collate's transform, ``image_size`` (h, w)
    of the image the model saw (the detections' pixels) and ``sample``, the sample as given.
    Batches hold one image size only when the model's backbone is ``padding_sensitive``.
    The forward pass runs under ``options``' autocast, the decoding outside it.
    """
    done: dict[int, tuple[dict[str, Any], dict[str, torch.Tensor]]] = {}
    position = 0
    chunks = ((chunk, collate([sample for _, sample in chunk]))
              for chunk in batches(samples, batch_size, same_size=getattr(model.backbone, "padding_sensitive", False)))
    for (chunk, batch), (outputs, on_device) in run_batches(model, chunks, lambda key: key[1],
                                                            lambda on_device: (model(on_device), on_device), options):
        found = model.decode(outputs, batch=on_device, **decode_options)
        for i, ((at, sample), detections) in enumerate(zip(chunk, found)):
            fed = {"boxes": batch["boxes"][i], "labels": batch["labels"][i],
                   "image_size": batch["image_sizes"][i].tolist(), "sample": sample}
            done[at] = fed, {k: v.cpu() for k, v in detections.items()}
        while position in done:  # same-size batches may finish out of order
            yield done.pop(position)
            position += 1


def to_original_pixels(boxes: torch.Tensor, fed_size: list[int], original_size: tuple[int, ...]) -> torch.Tensor:
    """(N, 4) xyxy boxes in the pixels of the image as fed (h', w') -> in the original image's (h, w)."""
    (fed_h, fed_w), (h, w) = fed_size, original_size[-2:]
    return boxes * torch.tensor([w / fed_w, h / fed_h, w / fed_w, h / fed_h], dtype=boxes.dtype)


def coco_evaluator() -> MeanAveragePrecision:
    """The COCO evaluator (``faster_coco_eval`` backend, xyxy boxes) that scores every detector and baseline."""
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval")


def coco_summary(metric: MeanAveragePrecision) -> dict[str, float]:
    """``map``, ``map_50``, ``map_75``, ``mar_100`` of the detections ``metric`` was updated with."""
    result = metric.compute()
    return {key: float(result[key]) for key in ("map", "map_50", "map_75", "mar_100")}


def coco_metrics(model: torch.nn.Module, samples: Iterable[dict], collate: Callable[[list[dict]], dict],
                 batch_size: int, options: EvalOptions, mapping: torch.Tensor) -> dict[str, float]:
    """``map``, ``map_50``, ``map_75``, ``mar_100`` of the model's detections on ``samples``.

    Scored in each image's original pixels against its boxes as read (see the module docstring).
    """
    metric = coco_evaluator()
    drawings = options.out / DRAWINGS if options.out is not None else None
    for number, (fed, found) in enumerate(detect(model, samples, collate, batch_size, options,
                                                 score_threshold=EVAL_SCORE_THRESHOLD,
                                                 max_detections=EVAL_MAX_DETECTIONS)):
        sample = fed["sample"]
        boxes = to_original_pixels(found["boxes"].float(), fed["image_size"], tuple(sample["image"].shape))
        truth = {"boxes": sample["boxes"].float(), "labels": mapping[sample["labels"]]}
        metric.update([{**found, "boxes": boxes}], [truth])
        if drawings is not None and number < DRAWN_PER_EVALUATION:
            _draw_sample(drawings, number, sample, truth, {**found, "boxes": boxes}, model.head.labels)
    return coco_summary(metric)


def _draw_sample(folder: Path, number: int, sample: dict, truth: dict[str, torch.Tensor],
                 found: dict[str, torch.Tensor], labels: list[str]) -> Path:
    """``folder/NN-<image>.png``: the sample's ground truth beside its detections scored at least
    :data:`DRAWN_SCORE` (in the image's own pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    shown = found["scores"] >= DRAWN_SCORE
    name = f"{number:02d}-{Path(str(sample.get('path', 'image'))).stem}.png"
    return draw_truth_and_predictions(sample["image"], (truth["boxes"], truth["labels"]),
                                      (found["boxes"][shown], found["labels"][shown], found["scores"][shown]),
                                      labels, folder / name, f"predictions (score ≥ {DRAWN_SCORE})")
