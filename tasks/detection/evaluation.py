"""Running a detector over samples, and the COCO metrics of its detections.

Metrics come from torchmetrics' ``MeanAveragePrecision`` with the ``faster_coco_eval`` backend
(COCO's evaluator): ``map`` (AP averaged over IoU .50:.95), ``map_50``, ``map_75`` and
``mar_100`` (recall with at most 100 detections per image), all fractions in [0, 1]. A data set
whose class names differ from the model's is mapped onto them by name; a class the model does
not know is an error naming it.
"""
from __future__ import annotations

import itertools
from contextlib import nullcontext
from typing import Any, Callable, Iterable

import torch
from torchmetrics.detection import MeanAveragePrecision

EVAL_SCORE_THRESHOLD = 0.01  # keep low-scored detections for AP (the precision-recall curve needs them)
EVAL_MAX_DETECTIONS = 100


def label_mapping(data_classes: list[str], model_labels: list[str], source: str) -> torch.Tensor:
    """(C_data,) long: the model's class id of each of the data set's class ids, matched by name."""
    index = {name: i for i, name in enumerate(model_labels)}
    unknown = [name for name in data_classes if name not in index]
    if unknown:
        raise ValueError(f"{source}: class(es) {unknown} are not among the model's labels {model_labels}; "
                         f"name the classes as the model does (classes=... in the data SPEC)")
    return torch.tensor([index[name] for name in data_classes], dtype=torch.long)


@torch.no_grad()
def detect(model: torch.nn.Module, samples: Iterable[dict], collate: Callable[[list[dict]], dict],
           batch_size: int, precision: str = "fp32", **decode_options: Any
           ) -> Iterable[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
    """Yield (the sample as fed, its detections on CPU) for every sample, in order, ``batch_size`` at a time.

    The sample as fed: ``boxes`` and ``labels`` after the collate's transform, ``image_size`` (h, w).
    """
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    was_training = model.training
    model.eval()
    try:
        iterator = iter(samples)
        while chunk := list(itertools.islice(iterator, batch_size)):
            batch = collate(chunk)
            on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast:
                outputs = model(on_device)
            for i, found in enumerate(model.decode(outputs, batch=on_device, **decode_options)):
                truth = {"boxes": batch["boxes"][i], "labels": batch["labels"][i],
                         "image_size": batch["image_sizes"][i].tolist()}
                yield truth, {k: v.cpu() for k, v in found.items()}
    finally:
        model.train(was_training)


def coco_metrics(model: torch.nn.Module, samples: Iterable[dict], collate: Callable[[list[dict]], dict],
                 batch_size: int, precision: str, mapping: torch.Tensor) -> dict[str, float]:
    """``map``, ``map_50``, ``map_75``, ``mar_100`` of the model's detections on ``samples``."""
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval")
    for truth, found in detect(model, samples, collate, batch_size, precision,
                               score_threshold=EVAL_SCORE_THRESHOLD, max_detections=EVAL_MAX_DETECTIONS):
        metric.update([found], [{"boxes": truth["boxes"].float(), "labels": mapping[truth["labels"]]}])
    result = metric.compute()
    return {key: float(result[key]) for key in ("map", "map_50", "map_75", "mar_100")}
