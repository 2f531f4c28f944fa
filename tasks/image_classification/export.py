"""Image classification as an exported graph: normalised images (B, 3, S, S) -> class ``logits`` (B, C).

The batch is dynamic; the image side is the one the model was trained at (the evaluation transform,
rebuilt from the sidecar's ``preprocessing["transform"]``, always gives it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from tasks.engine.export import Exported, Graph, Traced, refuse_option, softmax
from tasks.engine.images import as_image
from tasks.image_classification.evaluation import TOP_K
from tasks.image_classification.transforms import build_transform

TRACED_BATCH = 2


def graph(model: nn.Module) -> Graph:
    """The classifier's logits over a batch of images of the trained size."""
    size = model.preprocessing["transform"]["image_size"]
    images = torch.randn(TRACED_BATCH, 3, size, size)
    return Graph(Traced(model, lambda out: {"logits": out["logits"]}), {"inputs": images},
                 {"inputs": {0: "batch"}, "logits": {0: "batch"}})


def predict(exported: Exported, inputs: Sequence[str | Path | Image.Image | np.ndarray | torch.Tensor],
            top_k: int = TOP_K, explain_to: str | Path | None = None, batch_size: int = 64, **options: Any) -> list[dict[str, Any]]:
    """Per image ``{"label", "probability", "top": [{"label", "probability"}...]}``, as the task's ``predict``."""
    refuse_option("--explain", explain_to is not None)
    transform = build_transform(exported.preprocessing["transform"], train=False)
    labels = exported.sidecar["labels"]
    results: list[dict[str, Any]] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        images = np.stack([transform(as_image(item, f"input {start + n}")).numpy()
                           for n, item in enumerate(chunk, 1)])  # (B, 3, S, S)
        probabilities = softmax(exported.run(inputs=images)["logits"])  # (B, C)
        for row in probabilities:
            best = np.argsort(-row, kind="stable")[:min(top_k, len(labels))]
            top = [{"label": labels[i], "probability": float(row[i])} for i in best]
            results.append({"label": top[0]["label"], "probability": top[0]["probability"], "top": top})
    return results
