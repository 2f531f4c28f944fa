"""``--average-last N``: ``RUN/averaged/`` is the mean of the last N checkpoints, survives resume,
loads with ``zoo eval``; the printout names what ``zoo eval --checkpoint RUN`` evaluates."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tasks.engine.averaging import mean_state
from tasks.engine.trainer import train
from tests.test_cli import TINY_BACKBONE, write_reviews
from tests.test_trainer import Crash, ToyTask, load_toy, make_args, no_plots, toy_loader  # noqa: F401 (fixtures)
from zoo import cli
from zoo.errors import ZooError

FLAGS = ("--batch-size", 8, "--lr", 0.05, "--warmup-steps", 2, "--eval-every", 3, "--keep", 1)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def toy_run(out: Path, *flags) -> Path:
    task = ToyTask()
    task.batchnorm = True        # an integer buffer (num_batches_tracked) to take from the newest
    return train(task, make_args(task, *FLAGS, "--out", out, *flags))


def test_the_averaged_tensors_are_the_mean_of_the_last_checkpoints(tmp_path, capsys):
    run = toy_run(tmp_path / "run", "--max-steps", 12, "--average-last", 3)
    kept = {p.name for p in run.glob("step-*")} - {Path(run / "best").resolve().name}
    assert kept == {"step-6", "step-9", "step-12"}       # --keep 1 widened to the 3 averaged
    saved = [weights(run / f"step-{s}") for s in (6, 9, 12)]
    averaged = weights(run / "averaged")
    assert averaged.keys() == saved[0].keys()
    for name, tensor in averaged.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (saved[0][name] + saved[1][name] + saved[2][name]) / 3, msg=name)
            assert not torch.equal(tensor, saved[2][name]), name     # a mean, not the last
        else:
            assert torch.equal(tensor, saved[2][name]), name          # integer buffers: the newest
    assert json.loads((run / "averaged" / "config.json").read_text()) == json.loads(
        (run / "step-12" / "config.json").read_text())
    assert not (run / "averaged" / "trainer_state.json").exists()
    out = capsys.readouterr().out
    assert f"{run / 'averaged'}: mean of the last 3 checkpoints: step-6, step-9, step-12" in out
    best = Path(run / "best").resolve().name
    assert f"zoo eval --checkpoint {run} evaluates its best checkpoint, {best}" in out
    load_toy(run / "averaged")      # a model folder like any step-N


def test_more_than_the_checkpoints_averages_what_exists_and_says_so(tmp_path, capsys):
    run = toy_run(tmp_path / "run", "--max-steps", 6, "--average-last", 5)
    saved = [weights(run / f"step-{s}") for s in (3, 6)]
    torch.testing.assert_close(weights(run / "averaged"), mean_state(saved))
    assert "mean of the last 2 checkpoints (only 2 of the 5 asked exist): step-3, step-6" in capsys.readouterr().out


def test_without_the_flag_there_is_no_averaged_folder(tmp_path):
    assert not (toy_run(tmp_path / "run", "--max-steps", 3) / "averaged").exists()


def test_a_run_killed_and_resumed_averages_like_an_uninterrupted_one(tmp_path, toy_loader):  # noqa: F811
    whole = toy_run(tmp_path / "whole", "--max-steps", 12, "--average-last", 2)
    task = ToyTask()
    task.batchnorm, task.faults = True, {"crash_at": 11}     # killed in step 11, after the step-9 checkpoint
    with pytest.raises(Crash):
        train(task, make_args(task, *FLAGS, "--out", tmp_path / "part", "--max-steps", 12, "--average-last", 2))
    assert not (tmp_path / "part" / "averaged").exists()
    task.faults = {}
    part = train(task, make_args(task, "--resume", tmp_path / "part"))     # --average-last 2 from args.json
    torch.testing.assert_close(weights(part / "averaged"), weights(whole / "averaged"))
    torch.testing.assert_close(weights(part / "averaged"), mean_state([weights(part / "step-9"),
                                                                       weights(part / "step-12")]))


def test_checkpoints_of_different_models_are_refused():
    with pytest.raises(ZooError, match="cannot average checkpoints of different models"):
        mean_state([{"a": torch.zeros(2)}, {"b": torch.zeros(2)}])


def test_zoo_eval_reads_the_averaged_model(tmp_path, monkeypatch, capsys):
    write_reviews(tmp_path / "reviews.csv", 40, seed=0)
    monkeypatch.chdir(tmp_path)
    cli.main(["train", "sentiment", "--data", "csv:reviews.csv", "--out", "run", "--max-steps", "4",
              "--eval-every", "2", "--average-last", "2", "--batch-size", "8", "--vocab-size", "30",
              "--backbone-args", TINY_BACKBONE, "--device", "cpu", "--no-progress"])
    assert re.search(r"zoo eval --checkpoint run evaluates its best checkpoint, step-[24]; "
                     r"the averaged model: zoo eval --checkpoint run/averaged", capsys.readouterr().out)
    cli.main(["eval", "sentiment", "--checkpoint", "run/averaged", "--device", "cpu"])
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= scores["accuracy"] <= 1.0
