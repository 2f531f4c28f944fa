"""Detection on image files: read, detect, scale boxes back to the original pixels, draw them on a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from tasks.detection.drawing import draw
from tasks.detection.evaluation import detect, to_original_pixels
from tasks.engine.images import image_stem, read_image


def unlabelled(image: torch.Tensor, item: Any, index: int) -> dict[str, Any]:
    """The sample of an image (3, H, W) to predict on: no boxes, its index as id, its path ("input N" when
    the image came in memory)."""
    return {"image": image, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
            "image_id": index, "path": str(item) if isinstance(item, (str, Path)) else f"input {index + 1}"}


def predict_files(model: torch.nn.Module, paths: Sequence[str | Path | Image.Image | np.ndarray | torch.Tensor],
                  collate: Callable[[list[dict]], dict], labels: Sequence[str], *, batch_size: int,
                  score_threshold: float, max_detections: int, out: str | Path | None) -> list[dict[str, Any]]:
    """Per image (a file or one in memory): ``detections`` [{label, score, box [x1, y1, x2, y2] in the image's
    pixels}], its ``width``, ``height`` and, with ``out``, the ``drawn`` PNG (the image with its boxes, labels
    and scores).

    Overlapping boxes of different classes are suppressed too (class-agnostic NMS): one label per object.
    """
    images = [read_image(item, f"input {number}") for number, item in enumerate(paths, 1)]
    samples = [unlabelled(image, path, i) for i, (image, path) in enumerate(zip(images, paths))]
    found = detect(model, samples, collate, batch_size, score_threshold=score_threshold,
                   max_detections=max_detections, class_agnostic=True)
    return file_results(images, paths, ((to_original_pixels(d["boxes"].float(), fed["image_size"], tuple(image.shape)),
                                         d["scores"], d["labels"]) for image, (fed, d) in zip(images, found)),
                        labels, out)


def file_results(images: Sequence[torch.Tensor], paths: Sequence[Any],
                 found: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], labels: Sequence[str],
                 out: str | Path | None) -> list[dict[str, Any]]:
    """Per image (3, H, W) and its detections (boxes (K, 4) in its pixels, scores (K,), label ids (K,)): the
    ``detections`` rows, ``width``, ``height`` and, with ``out``, the ``drawn`` PNG."""
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    results, used_names = [], set()
    for image, path, (boxes, scores, ids) in zip(images, paths, found):
        height, width = image.shape[-2:]
        names = [labels[int(i)] for i in ids]
        result: dict[str, Any] = {
            "detections": [{"label": name, "score": round(float(score), 4), "box": [round(float(v), 1) for v in box]}
                           for name, score, box in zip(names, scores, boxes)],
            "width": width, "height": height,
        }
        if folder is not None:
            result["drawn"] = str(draw(image, boxes, names, scores, ids, _unique(folder, image_stem(path), used_names)))
        results.append(result)
    return results


def _unique(folder: Path, stem: str, used: set[str]) -> Path:
    """``folder/<stem>.png``, numbered when two inputs share a stem."""
    name, number = f"{stem}.png", 1
    while name in used:
        number += 1
        name = f"{stem}-{number}.png"
    used.add(name)
    return folder / name
