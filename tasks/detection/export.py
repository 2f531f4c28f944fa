"""Detection as an exported graph: normalised images (B, 3, H, W) -> per point (FCOS) or query (DETR) and
class ``scores`` (B, N, C) and ``boxes`` (B, N, 4) xyxy in the input's pixels; batch, height and width are
dynamic. FCOS scores are ``sqrt(p_class * p_centerness)``; DETR keeps each query's best real class
probability and zeroes the others, so one label per query survives.

The rest of the head's ``decode`` runs in numpy (:func:`decode`): the best ``candidates`` scores above the
threshold, boxes clipped to the image, class-agnostic NMS for FCOS (torchvision's, as ``zoo predict``; DETR's
set prediction needs none), the best ``max_detections``; then boxes are scaled to each file's pixels. Images go
through the graph in batches of one size (no padding), so a padding-sensitive backbone (our ViT) sees each
image as it would alone.
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torchvision.ops import batched_nms, box_convert

from heads.detection_dense import FCOSHead, distances_to_boxes
from heads.detection_detr import DETRHead
from tasks.detection.evaluation import batches, to_original_pixels
from tasks.detection.predict import file_results, unlabelled
from tasks.detection.transforms import build_detection_transform, collate_detection
from tasks.engine.export import Exported, Graph, Traced
from tasks.engine.images import read_image
from zoo.errors import ZooError

TRACED_SIZE = (2, 96, 128)      # batch, height, width: not square, so a ViT traces its position resizing
DECODE = {k: inspect.signature(FCOSHead.decode).parameters[k].default for k in ("candidates", "nms_iou")}


def graph(model: nn.Module) -> Graph:
    """FCOS scores and boxes of every point of every level, or DETR's of every query."""
    head = model.head
    if isinstance(head, FCOSHead):
        outputs, decoding = _fcos_outputs, dict(DECODE)
    elif isinstance(head, DETRHead):
        outputs = _detr_outputs
        decoding = {"candidates": head.queries.num_embeddings * (head.class_embed.out_features - 1), "nms_iou": None}
    else:
        raise ZooError(f"head {head.zoo_spec['name']!r}: detection exports the fcos and detr heads; "
                       f"use --format torch-export or `zoo predict detection --runtime torch`")
    batch, height, width = TRACED_SIZE
    axes = {"inputs": {0: "batch", 2: "height", 3: "width"}, "scores": {0: "batch", 1: "points"},
            "boxes": {0: "batch", 1: "points"}}
    return Graph(Traced(model, outputs), {"inputs": torch.randn(batch, 3, height, width)}, axes, decoding)


def _fcos_outputs(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    scores = (out["logits"].float().sigmoid() * out["centerness"].float().sigmoid()[..., None]).sqrt()
    return {"scores": scores, "boxes": distances_to_boxes(out["points"], out["distances"].float())}


def _detr_outputs(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each query's best real class keeps its probability, the others 0 (so the shared :func:`decode`
    picks one label per query); boxes xyxy in the input's pixels, as ``DETRHead.decode``."""
    probs = out["logits"].float().softmax(dim=-1)[..., :-1]  # (B, Q, C)
    best = probs.max(dim=-1, keepdim=True).values
    scale = out["image_sizes"].flip(-1).repeat(1, 2).float()[:, None]  # (B, 1, 4): w, h, w, h
    boxes = box_convert(out["boxes"].float(), "cxcywh", "xyxy") * scale
    return {"scores": probs.masked_fill(probs < best, 0.0), "boxes": boxes}


def decode(scores: np.ndarray, boxes: np.ndarray, size: Sequence[int], score_threshold: float, max_detections: int,
           candidates: int, nms_iou: float | None, class_agnostic: bool = True
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (N, C) scores and (N, 4) boxes -> (boxes (K, 4), scores (K,), labels (K,)), best first.

    NMS is class-agnostic (one label per object, as ``zoo predict``) unless ``class_agnostic`` is False:
    then per class, as the head's ``decode`` in ``zoo eval`` (what COCO AP rewards)."""
    classes = scores.shape[1]
    flat = scores.reshape(-1)
    top = np.argsort(-flat, kind="stable")[:candidates]
    top = top[flat[top] > score_threshold]
    picked, picked_scores, labels = boxes[top // classes], flat[top], top % classes
    height, width = size
    picked = np.clip(picked, 0, [width, height, width, height]).astype(np.float32)
    if nms_iou is None:                                 # ``top`` is best first
        order = np.arange(len(top))
    else:
        groups = torch.zeros(len(top), dtype=torch.long) if class_agnostic else torch.from_numpy(labels)
        order = batched_nms(torch.from_numpy(picked), torch.as_tensor(picked_scores, dtype=torch.float32), groups,
                            nms_iou).numpy()
    order = order[:max_detections]
    return picked[order], picked_scores[order], labels[order]


def predict(exported: Exported, inputs: Sequence[str], score_threshold: float = 0.3, max_detections: int = 100,
            out: str | None = None, batch_size: int = 8, **options: Any) -> list[dict[str, Any]]:
    """Per file ``detections`` [{label, score, box in the file's pixels}], ``width``, ``height`` (and ``drawn``
    with ``out``), as ``DetectionTask.predict``."""
    side, pre = exported.sidecar, exported.preprocessing
    transform = build_detection_transform(pre["transform"], train=False)
    images = [read_image(item, f"input {number}") for number, item in enumerate(inputs, 1)]
    fed = [transform(unlabelled(image, item, i)) for i, (image, item) in enumerate(zip(images, inputs))]
    found = {}
    for chunk in batches(fed, batch_size, same_size=True):    # one size a batch: no padding
        batch = collate_detection([sample for _, sample in chunk], pre["mean"], pre["std"])
        result = exported.run(inputs=batch["inputs"].numpy())
        for row, (i, sample) in enumerate(chunk):
            boxes, scores, labels = decode(result["scores"][row], result["boxes"][row], sample["image"].shape[-2:],
                                           score_threshold, max_detections, side["candidates"], side["nms_iou"])
            found[i] = (to_original_pixels(torch.from_numpy(boxes), sample["image"].shape[-2:], tuple(images[i].shape)),
                        torch.from_numpy(scores), torch.from_numpy(labels))
    return file_results(images, inputs, [found[i] for i in range(len(images))], side["labels"], out)
