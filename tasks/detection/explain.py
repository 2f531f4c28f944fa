"""`zoo explain detection`: per-box saliency, where in the image each detected box's score comes from.

The image is detected as by `zoo predict` (class-agnostic NMS, ``--score-threshold``), keeping the
``--max-boxes`` best; for each box the gradient of its score with respect to the input pixels is taken
(``|d score / d pixel|``, the maximum over colour channels, Simonyan et al., 2014). The picture shows
the image the model saw and, per box, its saliency map (scaled to a maximum of 1) with the box outlined.
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any, Sequence

import torch

import zoo
from tasks.detection.predict import unlabelled
from tasks.engine.evaluation import to_device
from tasks.engine.images import read_image
from tasks.engine.explain_plots import denormalised, fraction, heading, normalised, output_path, save_image_maps
from tasks.engine.flags import POSITIVE_INT, PROBABILITY

METHODS = ("gradient_saliency",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--score-threshold`` and ``--max-boxes``: which detections get a saliency map."""
    group = parser.add_argument_group("detection")
    group.add_argument("--score-threshold", type=PROBABILITY, default=0.3, help="explain boxes scored at least this")
    group.add_argument("--max-boxes", type=POSITIVE_INT, default=4, help="explain at most this many boxes per image")


def explain_inputs(model: torch.nn.Module, inputs: Sequence[str], method: str, out: Path,
                   score_threshold: float = 0.3, max_boxes: int = 4) -> list[dict[str, Any]]:
    """Per image file: ``prediction`` (the best box's label, "nothing" without one), ``score`` (its score),
    ``detections`` [{label, score, box in the pixels the model saw}], and the ``files``."""
    collate = zoo.get_task("detection").make_collate(model, train=False)
    device = next(model.parameters()).device
    labels = model.head.labels
    mean, std = model.preprocessing["mean"], model.preprocessing["std"]
    results = []
    for number, path in enumerate(inputs):
        batch = to_device(collate([unlabelled(read_image(path), str(path), 0)]), device)
        found, maps = box_saliency(model, batch, score_threshold, max_boxes)
        height, width = (int(v) for v in batch["image_sizes"][0])
        names = [labels[int(i)] for i in found["labels"]]
        detections = [{"label": name, "score": float(score), "box": [round(float(v), 1) for v in box]}
                      for name, score, box in zip(names, found["scores"], found["boxes"])]
        best = detections[0] if detections else {"label": "nothing", "score": 0.0}
        title = heading(f"{best['label']} and {len(detections) - 1} more box(es)" if len(detections) > 1
                        else best["label"], f"score = {fraction(best['score'])}", method.replace("_", " "))
        picture = save_image_maps(denormalised(batch["inputs"][0, :, :height, :width], mean, std),
                                  [normalised(m[:height, :width].cpu().numpy()) for m in maps],
                                  [f"{d['label']} {d['score']:.2f}" for d in detections], title,
                                  output_path(out, number, Path(path)), boxes=[d["box"] for d in detections],
                                  label="|d score / d pixel| (max = 1)")
        results.append({"prediction": best["label"], "score": best["score"], "score_name": "score",
                        "method": method, "detections": detections, "files": [str(picture)]})
    return results


def box_saliency(model: torch.nn.Module, batch: dict[str, Any], score_threshold: float,
                 max_boxes: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(detections of the batch's one image {boxes, scores, labels} detached, saliency maps (N, H, W)):
    per detected box, the gradient magnitude of its score w.r.t. each input pixel (max over channels)."""
    inputs = batch["inputs"].detach().float().requires_grad_(True)                       # (1, 3, H, W)
    fed = {**batch, "inputs": inputs}
    decode = inspect.unwrap(type(model.head).decode)   # the heads decode under no_grad; here scores need theirs
    with torch.enable_grad():
        found = decode(model.head, model(fed), batch=fed, score_threshold=score_threshold,
                       max_detections=max_boxes, class_agnostic=True)[0]
        maps = [torch.autograd.grad(score, inputs, retain_graph=True)[0][0].abs().amax(dim=0)
                for score in found["scores"]]                                             # N x (H, W)
    detached = {key: value.detach() for key, value in found.items()}
    empty = inputs.new_zeros((0, *inputs.shape[-2:]))
    return detached, torch.stack(maps) if maps else empty
