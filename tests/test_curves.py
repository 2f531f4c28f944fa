"""The training-curves picture: smoothed loss, validation points, learning rate, epoch axis."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.engine.curves import SMOOTHING, draw_curves, plot_curves, smooth


def _rows(steps: int, evaluations: tuple[int, ...]) -> list[dict]:
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "epoch": step / 50, "train_loss": 3.0 / step + (0.2 if step % 2 else -0.2),
               "lr": 1e-3 * min(1.0, step / 10)}
        if step in evaluations:
            row.update(val_loss=2.0 / step, val_accuracy=step / steps)
        rows.append(row)
    return rows


def test_smoothing_is_a_debiased_moving_average() -> None:
    assert smooth([4.0, 4.0, 4.0]) == pytest.approx([4.0, 4.0, 4.0])   # no pull towards zero at the start
    w = SMOOTHING
    expected_second = (w * (1 - w) * 1.0 + (1 - w) * 3.0) / (1 - w ** 2)
    assert smooth([1.0, 3.0]) == pytest.approx([1.0, expected_second])


def test_panels_show_raw_and_smoothed_loss_validation_points_and_the_learning_rate() -> None:
    fig = draw_curves(_rows(100, (50, 100)), "accuracy")
    loss_ax, metric_ax, lr_ax = fig.axes[:3]
    assert [ax.get_title() for ax in (loss_ax, metric_ax, lr_ax)] == ["loss", "validation accuracy", "learning rate"]
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert labels == ["train", f"train, smoothed ({SMOOTHING})", "validation"]
    raw, smoothed = loss_ax.get_lines()[0].get_ydata(), loss_ax.get_lines()[1].get_ydata()
    assert abs(raw[1:] - raw[:-1]).mean() > 5 * abs(smoothed[60:] - smoothed[59:-1]).mean()   # the zigzag is smoothed out
    (validation,) = metric_ax.get_lines()
    assert list(validation.get_xdata()) == [50, 100] and validation.get_marker() == "o"
    assert max(lr_ax.get_lines()[0].get_ydata()) == pytest.approx(1e-3)
    assert any(child.get_xlabel() == "epoch" for child in loss_ax.child_axes)   # epochs on the top edge


def test_learning_rate_ticks_print_the_values_they_mark() -> None:
    rows = [{"step": step, "epoch": step / 50, "train_loss": 1.0, "lr": 2e-3 * (1 - step / 250)} for step in range(1, 201)]
    fig = draw_curves(rows, "accuracy")
    lr_ax = fig.axes[2]
    fig.canvas.draw()
    ticks = [(tick, label.get_text()) for tick, label in zip(lr_ax.get_yticks(), lr_ax.get_yticklabels())]
    assert len(ticks) >= 4 and len({text for _, text in ticks}) == len(ticks)
    assert all(float(text) == pytest.approx(tick, abs=1e-12) for tick, text in ticks)   # 1.75e-03, not 1.8e-03


def test_a_single_evaluation_is_one_labelled_point_on_the_runs_step_axis() -> None:
    fig = draw_curves(_rows(100, (100,)), "accuracy")
    metric_ax = fig.axes[1]
    (point,) = metric_ax.get_lines()
    assert point.get_label() == "validation (evaluated once, at step 100)"
    low, high = metric_ax.get_xlim()
    assert low <= 1 and high >= 100        # shared with the loss panel: the whole run, not a lone tick


def test_plot_curves_writes_a_png_from_metrics_jsonl(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in _rows(20, (20,))) + "\n")
    out = plot_curves(tmp_path, "accuracy")
    assert out == tmp_path / "curves.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
