"""The confusion matrix of a classifier as ``confusion_matrix.json`` and a PNG heat map, written
atomically (a reader never sees half a file). Shared by the sentiment and image tasks."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from tasks.engine.curves import write_atomically

CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_PNG = "confusion_matrix.png"


def write_confusion_matrix(matrix: torch.Tensor, labels: list[str], out: Path) -> None:
    """``confusion_matrix.json`` ({"labels", "matrix"}, counts) and a PNG heat map in ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    counts = matrix.tolist()
    write_atomically(out / CONFUSION_JSON, lambda tmp: tmp.write_text(json.dumps({"labels": labels, "matrix": counts}) + "\n"))
    size = 2.5 + 0.6 * len(labels)
    fig = Figure(figsize=(size, size), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(matrix.numpy(), cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = range(len(labels))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title="confusion matrix")
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    threshold = matrix.max().item() / 2
    for row, values in enumerate(counts):
        for column, count in enumerate(values):
            ax.text(column, row, str(count), ha="center", va="center",
                    color="white" if count > threshold else "black")
    write_atomically(out / CONFUSION_PNG, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
