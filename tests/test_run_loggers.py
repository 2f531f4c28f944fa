"""Run logs besides metrics.jsonl: TensorBoard events read back, the CSV mirror, --logger and --keep."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import zoo
from tasks.engine.loggers import check_loggers, scalar_tag, write_csv_mirror
from tests.test_sentiment_task import _reviews, _write_csv
from zoo.errors import ZooError

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = json.dumps({"dim": 16, "depth": 1, "heads": 2})


def _train(tmp_path: Path, *flags: str, steps: int = 6) -> Path:
    data = _write_csv(tmp_path / "reviews.csv", _reviews(60, seed=0))
    return zoo.get_task("sentiment").command("train", [
        "--data", f"csv:{data}", "--vocab-size", "60", "--backbone-args", TINY, "--batch-size", "8",
        "--max-steps", str(steps), "--eval-every", "3", "--out", str(tmp_path / "run"), "--no-progress", *flags])


def logged_samples(run: Path) -> list[str]:
    """The texts a run logged as ``samples`` in its TensorBoard events, one per evaluation."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    if "samples/text_summary" not in events.Tags()["tensors"]:
        return []
    return [e.tensor_proto.string_val[0].decode() for e in events.Tensors("samples/text_summary")]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_events_hold_every_logged_scalar_the_flags_and_the_curves(tmp_path: Path) -> None:
    run = _train(tmp_path)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rows = _rows(run)
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(r["step"], pytest.approx(r["train_loss"], rel=1e-6)) for r in rows]
    accuracy = [(e.step, e.value) for e in events.Scalars("validation/accuracy")]
    assert accuracy == [(r["step"], pytest.approx(r["val_accuracy"], rel=1e-6)) for r in rows if "val_accuracy" in r]
    assert [step for step, _ in accuracy] == [3, 6]
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([r["lr"] for r in rows])
    assert "curves" in events.Tags()["images"] and "flags/text_summary" in events.Tags()["tensors"]
    confusion = events.Images("evaluation/confusion_matrix")          # drawn by each evaluation
    assert [e.step for e in confusion] == [3, 6] and confusion[0].width > 100
    assert logged_samples(run) == []                                   # sentiment decodes no sequences
    explained = [tag for tag in events.Tags()["images"] if tag.startswith("explanation/")]
    assert len(explained) == 2 and sorted(run.glob("explanations/*.png"))    # two validation texts, at the end
    picture = events.Images(explained[0])
    assert [e.step for e in picture] == [6] and picture[0].width > 200 and picture[0].height > 50


def test_a_model_that_cannot_be_explained_still_finishes_its_run_with_one_warning_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import tasks.sentiment.explain

    def no_captum(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'captum'")

    monkeypatch.setattr(tasks.sentiment.explain, "explain_inputs", no_captum)
    run = _train(tmp_path)
    assert (run / "best").exists()
    warned = [line for line in capsys.readouterr().err.splitlines() if "explanation" in line]
    assert warned == [("warning: no explanation pictures in the run's logs: ModuleNotFoundError: "
                       "No module named 'captum'")]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert not [tag for tag in events.Tags()["images"] if tag.startswith("explanation/")]


def test_csv_mirror_has_a_column_per_field_and_a_line_per_row(tmp_path: Path) -> None:
    run = _train(tmp_path)
    with open(run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    rows = _rows(run)
    assert len(table) == len(rows) and set(table[0]) == {k for r in rows for k in r}
    assert [float(t["train_loss"]) for t in table] == pytest.approx([r["train_loss"] for r in rows])
    assert [t["val_accuracy"] for t in table if t["val_accuracy"]] == [str(r["val_accuracy"]) for r in rows
                                                                      if "val_accuracy" in r]


def test_logger_none_writes_neither_and_keep_bounds_the_step_folders(tmp_path: Path) -> None:
    run = _train(tmp_path, "--logger", "none", "--keep", "1", "--checkpoint-every", "1")
    assert not (run / "tensorboard").exists() and not (run / "metrics.csv").exists()
    pointed = {(run / name).resolve().name for name in ("best", "last") if (run / name).exists()}
    steps = {p.name for p in run.glob("step-*")}
    assert steps == pointed | {"step-6"} and len(steps) <= 2     # of six saved: the newest and best's


def test_logger_flag_values_are_checked() -> None:
    assert check_loggers(["csv", "csv"]) == ["csv"] and check_loggers(["none"]) == []
    with pytest.raises(ZooError, match="'none' turns every logger off"):
        check_loggers(["none", "csv"])
    assert [scalar_tag(k) for k in ("val_loss", "train_loss", "lr", "grad_norm")] == [
        "validation/loss", "train/loss", "lr", "train/grad_norm"]


def test_csv_mirror_follows_a_truncated_jsonl(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train_loss": 2.0}\n{"step": 2, "val_x": {"a": 1}}\n')
    write_csv_mirror(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train_loss": 2.0}\n')
    lines = write_csv_mirror(tmp_path).read_text().splitlines()
    assert lines == ["step,train_loss", "1,2.0"]



def test_tasks_give_validation_samples_as_the_inputs_zoo_explain_takes(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from tasks.text_generation.formats import TextDataset

    texts = [{"text": "good", "source": "one"}, {"text": "bad", "source": "two"}, {"text": "meh", "source": "six"}]
    assert zoo.get_task("sentiment").explanation_inputs(texts, tmp_path) == ["good", "bad"]
    assert zoo.get_task("translation").explanation_inputs(texts, tmp_path, count=5) == ["one", "two", "six"]
    fortunes = TextDataset(["x" * 100, "short"], "memory")
    assert zoo.get_task("text_generation").explanation_inputs(fortunes, tmp_path) == ["x" * 40, "short"]
    pixels = np.random.default_rng(0).integers(0, 256, (3, 9, 7, 3), dtype=np.uint8)
    images = [{"image": Image.fromarray(p), "label": 0} for p in pixels]
    paths = zoo.get_task("image_classification").explanation_inputs(images, tmp_path / "in")
    assert paths == [str(tmp_path / "in" / f"validation-{i}.png") for i in range(2)]     # files `zoo explain` reads
    assert all((np.asarray(Image.open(path)) == p).all() for path, p in zip(paths, pixels))
    assert zoo.get_task("asr").explain_field == zoo.get_task("detection").explain_field == "path"
