"""The confusion-matrix picture: row fractions, counts beside the class names, split and step in the title."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from tasks.engine.confusion import CONFUSION_JSON, CONFUSION_PNG, confusion_figure, write_confusion_matrix
from tasks.engine.evaluation import EvalOptions
from tests.test_sentiment_task import _reviews, _write_csv

pytestmark = pytest.mark.usefixtures("one_thread")
COUNTS = torch.tensor([[50, 3, 0], [10, 30, 5], [0, 0, 0]])   # the third class never occurs


def test_picture_shows_each_true_class_as_fractions_with_its_count() -> None:
    fig = confusion_figure(COUNTS, ["negative", "neutral", "positive"], "validation, step 300")
    ax = fig.axes[0]
    shown = np.asarray(ax.images[0].get_array())
    assert shown == pytest.approx(np.array([[50 / 53, 3 / 53, 0], [10 / 45, 30 / 45, 5 / 45], [0, 0, 0]]))
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert "validation, step 300" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["negative (53)", "neutral (45)", "positive (0)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["negative", "neutral", "positive"]
    assert {t.get_text() for t in ax.texts} == {"0.94", "0.06", "0.00", "0.22", "0.67", "0.11"}


def test_many_classes_drop_the_cell_numbers_and_files_keep_the_counts(tmp_path: Path) -> None:
    counts = torch.eye(30, dtype=torch.long) * 4
    assert not confusion_figure(counts, [f"c{i}" for i in range(30)]).axes[0].texts
    write_confusion_matrix(COUNTS, list("abc"), tmp_path)
    assert json.loads((tmp_path / CONFUSION_JSON).read_text()) == {"labels": list("abc"), "matrix": COUNTS.tolist()}
    assert (tmp_path / CONFUSION_PNG).read_bytes()[:4] == b"\x89PNG"


def test_subject_names_split_and_step() -> None:
    assert EvalOptions(split="validation", step=300).subject() == "validation, step 300"
    assert EvalOptions(split="test").subject() == "test" and EvalOptions().subject() == ""


def test_training_and_eval_title_their_pictures_with_split_and_step(tmp_path: Path, monkeypatch) -> None:
    subjects: list[str] = []
    monkeypatch.setattr("tasks.sentiment.evaluation.write_confusion_matrix",
                        lambda matrix, labels, out, subject: subjects.append(subject))
    data = _write_csv(tmp_path / "reviews.csv", _reviews(60, seed=0))
    task = zoo.get_task("sentiment")
    run = task.command("train", ["--data", f"csv:{data}", "--vocab-size", "60", "--batch-size", "8",
                                 "--backbone-args", json.dumps({"dim": 16, "depth": 1, "heads": 2}),
                                 "--max-steps", "4", "--eval-every", "2", "--out", str(tmp_path / "run"),
                                 "--no-progress", "--logger", "none"])
    assert subjects == ["validation, step 2", "validation, step 4"]
    best = (Path(run) / "best").resolve().name
    task.command("eval", ["--checkpoint", str(run), "--out", str(tmp_path / "eval")])
    assert subjects[-1] == f"test, step {best.removeprefix('step-')}"
