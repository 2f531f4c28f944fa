"""Training curves as a PNG in the run folder, drawn from ``metrics.jsonl``.

Three panels on one step axis (with the epoch on top when the rows carry it): the training loss
(raw, faint, and smoothed by a debiased exponential moving average, as TensorBoard smooths) with
the validation loss as points; the validation metric as points joined by a line; the learning
rate. All panels share the run's step range, so a run that evaluates only at the end shows one
point where it was taken, labelled as such. Uses matplotlib's object API on an Agg canvas (no
pyplot, no global backend switch), and writes through a temporary file + ``os.replace`` so a
reader never sees half a PNG.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SMOOTHING = 0.9   # weight of the past in the training-loss EMA (TensorBoard's default slider is 0.6-0.9)


def plot_curves(run_dir: Path, metric: str, name: str = "curves.png") -> Path:
    """Draw :func:`draw_curves` of the run's ``metrics.jsonl`` into ``run_dir/name``; returns the PNG path."""
    run_dir = Path(run_dir)
    fig = draw_curves(read_metrics(run_dir), metric)
    out = run_dir / name
    write_atomically(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return out


def _scientific(value: float, _position: int | None = None) -> str:
    """A tick in scientific notation with the digits it needs (1.75e-03, 1.5e-03, 0e+00): a fixed
    ``%.1e`` would print 1.75e-03 and 1.25e-03 as 1.8e-03 and 1.3e-03."""
    import numpy as np

    return np.format_float_scientific(value, precision=3, trim="-")


def draw_curves(rows: list[dict[str, Any]], metric: str) -> "Figure":
    """The loss (raw, smoothed, validation), the validation ``metric`` and the learning rate of
    ``metrics.jsonl`` rows against step, as a matplotlib Figure on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(14, 4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, metric_ax, lr_ax = fig.subplots(1, 3, sharex=True)
    steps, train = _series(rows, "train_loss")
    if steps:
        loss_ax.plot(steps, train, color="tab:blue", alpha=0.25, linewidth=0.8, label="train")
        loss_ax.plot(steps, smooth(train), color="tab:blue", label=f"train, smoothed ({SMOOTHING})")
    _points(loss_ax, rows, "val_loss", "validation", "tab:orange")
    loss_ax.set(xlabel="step", ylabel="loss", title="loss")
    _points(metric_ax, rows, f"val_{metric}", "validation", "tab:orange")
    metric_ax.set(xlabel="step", ylabel=metric, title=f"validation {metric}")
    lr_steps, lr = _series(rows, "lr")
    if lr_steps:
        lr_ax.plot(lr_steps, lr, color="tab:green")
    lr_ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    lr_ax.yaxis.set_major_formatter(FuncFormatter(_scientific))   # no offset text under the epoch axis
    for ax in (loss_ax, metric_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    _epoch_axis((loss_ax, metric_ax, lr_ax), rows)
    return fig


def smooth(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """Debiased exponential moving average: ``ema_t = w ema_{t-1} + (1 - w) x_t``, divided by
    ``1 - w^t`` so the first points are not pulled towards zero."""
    average, out = 0.0, []
    for t, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** t))
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


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows with a number under ``key``."""
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [step for step, _ in points], [value for _, value in points]


def _points(ax, rows: list[dict], key: str, label: str, color: str) -> None:
    """Validation values as marked points (joined when there are several); a lone one says when it was taken."""
    steps, values = _series(rows, key)
    if not steps:
        return
    if len(steps) == 1:
        label = f"{label} (evaluated once, at step {steps[0]})"
    ax.plot(steps, values, marker="o", color=color, label=label)


def _epoch_axis(axes, rows: list[dict]) -> None:
    """Epochs on the top edge, from the rows' step -> epoch ratio (training rows carry both)."""
    pairs = [(r["step"], r["epoch"]) for r in rows if r.get("step") and isinstance(r.get("epoch"), (int, float))]
    if not pairs or pairs[-1][1] <= 0:
        return
    per_step = pairs[-1][1] / pairs[-1][0]
    for ax in axes:
        ax.secondary_xaxis("top", functions=(lambda s: s * per_step, lambda e: e / per_step)).set_xlabel("epoch")
