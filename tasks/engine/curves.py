"""Training curves as a PNG in the run folder, drawn from ``metrics.jsonl``.

Uses matplotlib's object API on an Agg canvas (no pyplot, no global backend switch), and
writes through a temporary file + ``os.replace`` so a reader never sees half a PNG.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def plot_curves(run_dir: Path, metric: str, name: str = "curves.png") -> Path:
    """Draw train/validation loss and the validation ``metric`` against step; returns the PNG path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, metric_ax = fig.subplots(1, 2)
    _line(loss_ax, rows, "train_loss", "train")
    _line(loss_ax, rows, "val_loss", "validation", marker="o")
    loss_ax.set(xlabel="step", ylabel="loss", title="loss")
    loss_ax.legend()
    _line(metric_ax, rows, f"val_{metric}", "validation", marker="o")
    metric_ax.set(xlabel="step", ylabel=metric, title=f"validation {metric}")
    out = run_dir / name
    write_atomically(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return out


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run folder's ``metrics.jsonl`` (blank lines skipped)."""
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then ``os.replace`` it there, so a reader
    never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _line(ax, rows: list[dict], key: str, label: str, **style) -> None:
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values, label=label, **style)
