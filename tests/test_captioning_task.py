"""The captioning Task: a short learning run, `zoo eval` with the nearest-neighbour baseline, `zoo predict`,
save -> load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from tasks.captioning.evaluation import nearest_neighbour_captions, scores
from tasks.engine.evaluation import EvalOptions
from tests.test_captioning_data import captioned_folder
from zoo.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
TASK = zoo.get_task("captioning")
TINY = ["--backbone-args", json.dumps({"dim": 32, "depth": 1, "heads": 2, "patch_size": 8}),
        "--head-args", '{"depth": 1, "heads": 2}', "--vocab-size", "30"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, captions TSV) of a short `zoo train captioning` run on 40 left/right images."""
    root = tmp_path_factory.mktemp("captioning")
    tsv = captioned_folder(root / "set", 40)
    torch.manual_seed(0)
    TASK.command("train", ["--data", f"tsv:{tsv}", "--val-data", f"tsv:{tsv}", "--out", str(root / "run"), *TINY,
                           "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "5", "--max-steps", "200",
                           "--eval-every", "0", "--no-progress"])
    return root / "run", tsv


def test_training_lowers_the_loss_and_learns_left_from_right(trained: tuple[Path, Path]) -> None:
    run, tsv = trained
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    model = zoo.load(run / "best")
    metrics = TASK.evaluate(model, TASK.datasets(f"tsv:{tsv}", "all"), EvalOptions(batch_size=16))
    assert metrics["exact_match"] >= 0.9 and metrics["bleu"] > 80      # chance: half the sides right


def test_eval_prints_the_nearest_neighbour_baseline_on_a_test_split(trained: tuple[Path, Path],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run, tsv = trained
    capsys.readouterr()
    main(["eval", "captioning", "--checkpoint", str(run), "--data", f"tsv:{tsv}", "--split", "test", "--device", "cpu"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"bleu", "chrf", "exact_match", "baseline_bleu", "baseline_chrf"} <= result.keys()
    test = TASK.datasets(f"tsv:{tsv}", "test")
    guessed = nearest_neighbour_captions(test.reader("train"), test)
    expected = scores(guessed, [r.captions for r in test.records])
    assert result["baseline_bleu"] == pytest.approx(expected["bleu"])


def test_nearest_neighbour_takes_the_closest_training_image(tmp_path: Path) -> None:
    tsv = captioned_folder(tmp_path / "set", 6)
    everything = TASK.datasets(f"tsv:{tsv}", "all")
    assert nearest_neighbour_captions(everything, everything) == [r.captions[0] for r in everything.records]


def test_predict_prints_captions_and_a_reloaded_model_predicts_the_same(trained: tuple[Path, Path], tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run, tsv = trained
    images = [str(tsv.parent / "0.png"), str(tsv.parent / "1.png")]
    capsys.readouterr()
    main(["predict", "captioning", "--checkpoint", str(run), *images, "--device", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"{images[0]}\ta red square on the left", f"{images[1]}\ta red square on the right"]
    model = zoo.load(run / "best")
    model.save(tmp_path / "copy")
    again = zoo.load(tmp_path / "copy")
    assert TASK.predict(again, images, beams=3) == TASK.predict(model, images, beams=3)
