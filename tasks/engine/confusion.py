"""The confusion matrix of a classifier as ``confusion_matrix.json`` and a PNG heat map, written
atomically (a reader never sees half a file). Shared by the sentiment and image tasks.

The JSON keeps the counts; the picture (``sklearn.metrics.ConfusionMatrixDisplay``) shows each row
as the fractions of its true class, so a rare class reads as clearly as a common one, with the
class's count beside its name and the split and step in the title.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tasks.engine.curves import write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_PNG = "confusion_matrix.png"
MAX_WRITTEN_CELLS = 20   # classes up to which every cell shows its fraction; beyond, the colours alone


def write_confusion_matrix(matrix: torch.Tensor, labels: list[str], out: Path, subject: str = "") -> None:
    """``confusion_matrix.json`` ({"labels", "matrix"}, counts) and the :func:`confusion_figure` PNG in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    counts = matrix.tolist()
    write_atomically(out / CONFUSION_JSON, lambda tmp: tmp.write_text(json.dumps({"labels": labels, "matrix": counts}) + "\n"))
    fig = confusion_figure(matrix, labels, subject)
    write_atomically(out / CONFUSION_PNG, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def confusion_figure(matrix: torch.Tensor, labels: list[str], subject: str = "") -> Figure:
    """A heat map of the (C, C) counts (rows: true class) as row fractions, each true class's count
    beside its name; ``subject`` (e.g. "validation, step 300") goes into the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    classes = len(labels)
    side = min(4.0 + 0.45 * classes, 24.0)   # inches: about half an inch per class, a readable minimum
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = [f"{name} ({count})" for name, count in zip(labels, matrix.sum(dim=1).tolist())]
    fractions = matrix.double() / matrix.double().sum(dim=1, keepdim=True).clamp(min=1)   # a class never seen: 0
    display = ConfusionMatrixDisplay(fractions.numpy(), display_labels=names).plot(
        ax=ax, cmap="Blues", include_values=classes <= MAX_WRITTEN_CELLS, values_format=".2f",
        im_kw={"vmin": 0.0, "vmax": 1.0}, text_kw={"fontsize": 9 if classes > 8 else 11})
    if max(map(len, labels), default=0) > 3:   # long names slant to stay apart; digits stay upright
        ax.set_xticks(range(classes), labels, rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(range(classes), labels)
    ax.set(xlabel="predicted class", ylabel="true class (its number of samples)")
    ax.set_title(f"Confusion matrix{', ' + subject if subject else ''}\nfraction of each true class", fontsize=12)
    display.im_.colorbar.set_label("fraction of the true class")
    return fig
