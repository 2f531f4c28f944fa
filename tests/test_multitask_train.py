"""`zoo multitask`: refusals, the two samplings, a tiny two-part run (sentiment + text generation on one
causal decoder) with its per-part logs, metrics and best/, and eval/predict of each head afterwards."""
from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
import torch

import zoo
from tasks.engine.checkpoints import checkpoint_step, resolve_checkpoint
from tasks.engine.evaluation import EvalOptions
from tasks.engine.multitask import PART, MultiTask, Parts, multitask_command
from zoo.cli import main
from zoo.errors import ZooError
from zoo.multihead import MultiHeadModel

TINY = json.dumps({"dim": 32, "depth": 1, "heads": 2})
POSITIVE = ["good", "great", "wonderful", "superb", "charming", "brilliant"]
NEGATIVE = ["bad", "awful", "dull", "boring", "terrible", "tedious"]
OPENINGS = ["the film is", "this movie felt", "the actors were", "overall it was"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """Data SPECs in the tasks' user formats: labelled reviews (CSV) and a text of one sentence a line."""
    folder = tmp_path_factory.mktemp("multitask")
    rng = random.Random(0)
    with open(folder / "reviews.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(240):
            positive = rng.random() < 0.5
            words = rng.sample(POSITIVE if positive else NEGATIVE, 2)
            writer.writerow([f"{rng.choice(OPENINGS)} {words[0]} and {words[1]}",
                             "positive" if positive else "negative"])
    lines = [f"{rng.choice(OPENINGS)} {rng.choice(POSITIVE + NEGATIVE)} said the {rng.choice(['cat', 'dog'])}"
             for _ in range(400)]
    (folder / "story.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"sentiment": f"csv:{folder / 'reviews.csv'}", "text_generation": f"text:{folder / 'story.txt'}?sample_by=line"}


def _argv(data: dict[str, str], out: Path, *extra: str) -> list[str]:
    return ["--part", "sentiment", "--part", "text_generation", "--backbone", "text_decoder_tiny",
            "--backbone-args", TINY, "--vocab-size", "60", "--batch-size", "8", "--lr", "3e-3",
            "--data-for", f"sentiment={data['sentiment']}", "--data-for", f"text_generation={data['text_generation']}",
            "--flags-for", "text_generation=--block-size 16", "--flags-for", "sentiment=--max-len 24",
            "--device", "cpu", "--logger", "none", "--no-progress", "--out", str(out), *extra]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("argv, message", [
    (["--part", "sentiment"], "--part: name two different tasks"),
    (["--part", "sentiment", "--part", "sentimnt"], "--part sentimnt: unknown task 'sentimnt'; did you mean 'sentiment'"),
    (["--part", "sentiment", "--part", "image_classification"], "sentiment reads text, image_classification reads image"),
    (["--part", "sentiment", "--part", "text_generation", "--backbone", "vit_tiny"],
     "--backbone vit_tiny is an image backbone"),
    (["--part", "sentiment", "--part", "text_generation", "--backbone", "text_decodr_tiny"],
     "--backbone text_decodr_tiny: unknown backbone"),
    (["--part", "sentiment", "--part", "text_generation"], "--backbone: name the text backbone"),
    (["--best", "sentiment/bleu"], r"--best sentiment/bleu: expected a part's primary metric .*sentiment/accuracy"),
    (["--best", "translation/bleu"], "--best translation/bleu"),
    (["--weights", "sentiment=-1"], "--weights sentiment=-1: expected a finite number >= 0"),
    (["--weights", "sentiment=much"], "--weights sentiment=much: expected a finite number"),
    (["--weights", "topic=1"], "'topic' is not a --part"),
    (["--weights", "sentiment=0", "--weights", "text_generation=0"], "--weights are all 0"),
    (["--data-for", "sentiment"], "--data-for sentiment: expected TASK=SPEC"),
    (["--data-for", "sentiment=reviews.csv"], "--data-for sentiment=reviews.csv: .*FORMAT:PATH"),
    (["--data", "builtin:default"], "--data/--val-data: each part has its own data set"),
    (["--head", "lm"], "--head/--head-args: each part uses its task's head"),
])
def test_refusals_name_the_flag(argv: list[str], message: str, tmp_path: Path) -> None:
    base = [] if argv[0] == "--part" else ["--part", "sentiment", "--part", "text_generation",
                                           "--backbone", "text_decoder_tiny"]
    with pytest.raises(ZooError, match=message):
        multitask_command([*base, *argv, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_cli_refusal_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["multitask", "--part", "sentiment", "--part", "asr", "--backbone", "text_decoder_tiny"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("zoo: error: --part: sentiment reads text, asr reads audio") and "\n" not in error


@pytest.mark.parametrize("sampling", ["alternate", "proportional"])
def test_sampling_covers_every_sample(sampling: str) -> None:
    """alternate: every batch holds one batch of each part (the small part cycles); proportional: one part per
    batch, every sample once per epoch, so the parts are drawn in proportion to their sizes."""
    task = MultiTask({"sentiment": zoo.get_task("sentiment"), "text_generation": zoo.get_task("text_generation")},
                     sampling=sampling)
    parts = Parts({"sentiment": [{"text": "x" * (i % 7 + 1), "label": 0} for i in range(40)],
                   "text_generation": [{"block": torch.zeros(3)} for _ in range(10)]})
    assert parts[41] == {"block": parts.sets["text_generation"][1]["block"], PART: "text_generation"}
    batches = task.batch_sampler(parts, 4, torch.Generator().manual_seed(0), train=True)
    owners = [{parts[i][PART] for i in batch} for batch in batches]
    flat = [i for batch in batches for i in batch]
    if sampling == "proportional":
        assert len(batches) == 10 + 3 and all(len(o) == 1 for o in owners)
        assert sorted(flat) == list(range(50))
        assert sum(o == {"text_generation"} for o in owners) == 3
    else:
        assert len(batches) == 10 and all(o == {"sentiment", "text_generation"} for o in owners)
        assert sorted(i for i in flat if i < 40) == list(range(40))      # the large part: once each
        assert set(i for i in flat if i >= 40) == set(range(40, 50))     # the small part: cycled


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multitask-run") / "run"
    return multitask_command(_argv(data, out, "--max-steps", "30", "--eval-every", "10", "--best", "sentiment/accuracy",
                                   "--weights", "text_generation=0.5", "--warmup-steps", "3"))


def test_run_logs_each_part_and_learns(run: Path) -> None:
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(1, 31))
    for row in rows:      # the logged total is the weighted sum of the logged parts
        assert row["train_loss"] == pytest.approx(row["train_loss/sentiment"] + 0.5 * row["train_loss/text_generation"],
                                                  rel=1e-5)
    first, last = rows[:5], rows[-5:]
    for part in ("sentiment", "text_generation"):
        before = sum(r[f"train_loss/{part}"] for r in first) / 5
        after = sum(r[f"train_loss/{part}"] for r in last) / 5
        assert after < before - 0.05, (part, before, after)
    evaluated = [r for r in rows if "val_sentiment/accuracy" in r]
    assert [r["step"] for r in evaluated] == [10, 20, 30]
    assert all(0 <= r["val_sentiment/accuracy"] <= 1 and r["val_text_generation/bits_per_char"] > 0 for r in evaluated)
    best_step = checkpoint_step(resolve_checkpoint(run, "best"))
    accuracies = [r["val_sentiment/accuracy"] for r in evaluated]
    assert best_step == evaluated[accuracies.index(max(accuracies))]["step"]
    saved = json.loads((run / "args.json").read_text())
    assert saved["weights"] == {"sentiment": 1.0, "text_generation": 0.5} and set(saved["data_for"]) == {
        "sentiment", "text_generation"}


def test_checkpoint_loads_and_each_head_evaluates_and_predicts(run: Path, data, capsys) -> None:
    model = zoo.load(run)
    assert isinstance(model, MultiHeadModel) and list(model.heads) == ["sentiment", "text_generation"]
    assert model.head_weights == {"sentiment": 1.0, "text_generation": 0.5}
    assert model.preprocessing["eos"] is True and model.preprocessing["block_size"] == 16
    sentiment, text_generation = zoo.get_task("sentiment"), zoo.get_task("text_generation")
    scored = sentiment.command("eval", ["--checkpoint", str(run), "--head", "sentiment", "--device", "cpu",
                                        "--no-progress"])
    assert scored["data"] == data["sentiment"] and scored["split"] == "test" and 0 <= scored["accuracy"] <= 1
    test_set = sentiment.datasets(data["sentiment"], "test")
    assert scored["n"] == len(test_set)
    view = model.single_head("sentiment").eval()
    again = sentiment.evaluate(view, test_set, EvalOptions(batch_size=64, progress=False))
    assert again["accuracy"] == pytest.approx(scored["accuracy"])
    lm = text_generation.command("eval", ["--checkpoint", str(run), "--head", "text_generation", "--device", "cpu",
                                          "--no-progress"])
    assert lm["data"] == data["text_generation"] and math.isfinite(lm["bits_per_char"])
    labels = sentiment.command("predict", ["--checkpoint", str(run), "--head", "sentiment", "--device", "cpu",
                                           "the film is superb and charming"])
    assert labels[0]["label"] in ("positive", "negative")
    texts = text_generation.command("predict", ["--checkpoint", str(run), "--head", "text_generation", "--device",
                                                "cpu", "--max-new-tokens", "5", "the film"])
    assert isinstance(texts[0], str) and texts[0]
    with pytest.raises(ZooError, match="that head was trained for the sentiment task"):
        text_generation.command("eval", ["--checkpoint", str(run), "--head", "sentiment", "--device", "cpu"])


def test_proportional_run_logs_the_drawn_part_only(data, tmp_path: Path) -> None:
    run = multitask_command(_argv(data, tmp_path / "run", "--sampling", "proportional", "--max-steps", "8"))
    rows = _rows(run)
    drawn = [[part for part in ("sentiment", "text_generation") if row[f"train_loss/{part}"] is not None]
             for row in rows]
    assert all(len(parts) == 1 for parts in drawn) and {p[0] for p in drawn} == {"sentiment", "text_generation"}
    for row, (part,) in zip(rows, drawn):
        assert row["train_loss"] == pytest.approx(row[f"train_loss/{part}"], rel=1e-5)
    assert "val_text_generation/bits_per_char" in rows[-1] and "val_sentiment/accuracy" in rows[-1]


def test_resume_needs_no_flags_again_and_continues_exactly(data, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    flags = ("--sampling", "proportional", "--max-steps", "6", "--checkpoint-every", "3")
    whole = multitask_command(_argv(data, tmp_path / "whole", *flags))
    collate_of = MultiTask.make_collate

    def crashing(self, model, train):      # the 4th training batch never comes: the run dies after step-3
        collate, calls = collate_of(self, model, train), []

        def crash(samples):
            calls.append(1)
            if train and len(calls) == 4:
                raise RuntimeError("crash")
            return collate(samples)
        return crash

    monkeypatch.setattr(MultiTask, "make_collate", crashing)
    with pytest.raises(RuntimeError, match="crash"):
        multitask_command(_argv(data, tmp_path / "crashed", *flags))
    monkeypatch.setattr(MultiTask, "make_collate", collate_of)
    assert resolve_checkpoint(tmp_path / "crashed", "last").name == "step-3" and len(_rows(tmp_path / "crashed")) == 3
    crashed = multitask_command(["--resume", str(tmp_path / "crashed"), "--no-progress"])
    keys = ("train_loss", "train_loss/sentiment", "train_loss/text_generation")
    assert [[r[k] for k in keys] for r in _rows(crashed)] == [[r[k] for k in keys] for r in _rows(whole)]
