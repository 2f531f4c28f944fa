"""The ``zoo`` command: listing, data preparation, help and version, how user errors print, which
data and split ``zoo eval`` scores, the flags' range types and the backbone/head argument check."""
from __future__ import annotations

import argparse
import csv
import errno
import json
import random
import re
import shutil
from pathlib import Path

import pytest
import torch

import zoo
from tasks.engine.commands import read_input_file
from tasks.engine.device import pick_device
from tasks.engine.flags import (COUNT, DECAY, DROP_FRACTION, POSITIVE, PROBABILITY, Range, check_factory_args,
                                factory_keys)
from tasks.engine.task import Task
from zoo import cli
from zoo.errors import ZooError
from zoo.registry import COMMANDS, Registry

TASK_NAMES = zoo.list_tasks()


def test_list_tasks_prints_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["list", "tasks"])
    assert capsys.readouterr().out.split() == TASK_NAMES


def test_data_prepare_quick_builds_only_each_tasks_quick_set(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, tuple] = {}

    def record(task: Task, sets: list[str] | None = None, force: bool = False) -> None:
        calls[task.name] = (sets, force)

    for name in TASK_NAMES:
        monkeypatch.setattr(type(zoo.get_task(name)), "prepare", record)
    cli.main(["data", "prepare", "--quick"])
    assert calls == {name: ([zoo.get_task(name).quick_set], False) for name in TASK_NAMES}
    assert calls["asr"] == (["digits"], False) and calls["sentiment"] == (["default"], False)
    calls.clear()
    cli.main(["data", "prepare", "translation", "--set", "numbers", "--force"])
    assert calls == {"translation": (["numbers"], True)}
    calls.clear()
    cli.main(["data", "prepare", "sentiment"])
    assert calls == {"sentiment": (None, False)}


# ---- a tiny trained run (shared with test_cli_errors.py) ---------------------------------------

TINY_BACKBONE = '{"dim": 16, "depth": 1, "heads": 2}'
_WORDS = {"positive": ["good", "great", "superb", "fine"], "negative": ["bad", "dull", "awful", "weak"]}


def write_reviews(path: Path, n: int, seed: int) -> Path:
    """A CSV of ``n`` synthetic one-word-sentiment reviews (columns text, label)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n):
            label = rng.choice(sorted(_WORDS))
            writer.writerow([f"the film is {rng.choice(_WORDS[label])}", label])
    return path


def train_tiny_run(folder: Path) -> Path:
    """Train sentiment for 2 steps on ``folder/reviews.csv`` into ``folder/run``, cwd = ``folder``."""
    write_reviews(folder / "reviews.csv", 40, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        cli.main(["train", "sentiment", "--data", "csv:reviews.csv", "--out", "run", "--max-steps", "2",
                  "--batch-size", "8", "--vocab-size", "30", "--backbone-args", TINY_BACKBONE, "--device", "cpu",
                  "--no-progress"])
    return folder / "run"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("cli-run"))


def _exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    return exit_info.value.code


# ---- version, help ------------------------------------------------------------------------------

def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"zoo {zoo.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"], ["data", "-h"], ["train", "--help"],
                                  ["eval", "--help"], ["predict", "-h"], ["train", "sentiment", "--help"],
                                  ["eval", "translation", "--help"], ["predict", "detection", "-h"]])
def test_help_at_every_level_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: zoo")
    if len(argv) == 3:      # a task's help names the task and lists its own flags
        assert out.startswith(f"usage: zoo {argv[0]} {argv[1]}")


def test_train_help_shows_the_shared_flags_with_defaults_and_the_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE items per batch per process (default: 32)" in out
    assert "--grad-clip GRAD_CLIP clip the gradient norm to this (0: off) (default: 1.0)" in out
    assert all(name in out for name in TASK_NAMES)


def test_task_help_shows_the_tasks_own_flags_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.sentiment.task import SentimentTask

    assert _exit_status(["train", "sentiment", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"passes over the training set (default: {SentimentTask.train_defaults['epochs']})" in out
    assert "--token-dropout TOKEN_DROPOUT" in out and "(default: 0.15)" in out


def test_no_arguments_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main([])
    out = capsys.readouterr().out
    assert all(command in out for command in ("list", "data", "train", "eval", "predict", "bench", "demo"))


# ---- listing ----------------------------------------------------------------------------------------

def test_list_pattern_that_matches_nothing_fails_naming_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status(["list", "backbones", "vit_tinny"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: no backbone matches 'vit_tinny'") and "did you mean 'vit_tiny'" in err
    cli.main(["list", "backbones", "vit_t*"])
    assert capsys.readouterr().out.split()[0] == "vit_tiny"


# ---- user errors at the top: one line, or the traceback for bugs and under ZOO_DEBUG ------------------

def _raising(error: BaseException):
    def run(args) -> None:
        raise error

    return run


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/step-3"), "runs/x/step-3: no space left on the disk"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/run"), "/ro/run: the file system is read-only"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "q"), "q: the disk quota is used up"),
    (PermissionError(errno.EACCES, "Permission denied", "secret.csv"), "secret.csv: permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "data"), "data: is a folder, not a file"),
    (FileNotFoundError("tokenizer file t.model not found"), "tokenizer file t.model not found"),
    (KeyError("unknown head 'x'; did you mean 'y'?"), "unknown head 'x'; did you mean 'y'?"),
    (ValueError("first line\n  second line"), "first line; second line"),
])
def test_user_errors_print_one_line(error, expected, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "_list", _raising(error))
    assert _exit_status(["list", "tasks"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"zoo: error: {expected}") and err.count("\n") == 1 and err.endswith("\n")


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyError("weight"), OSError(errno.EIO, "I/O error", "f")])
def test_other_errors_keep_their_traceback(error, monkeypatch) -> None:
    monkeypatch.setattr(cli, "_list", _raising(error))
    with pytest.raises(type(error)):
        cli.main(["list", "tasks"])


def test_zoo_debug_reraises_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(ZooError, match="no backbone matches"):
        cli.main(["list", "backbones", "nothing_like_it"])


# ---- --device, checked both ways -------------------------------------------------------------------

def test_device_cuda_without_a_gpu_is_refused(run: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _exit_status(["eval", "sentiment", "--checkpoint", str(run), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda" in err and "--device cpu" in err
    with pytest.raises(ZooError, match="--device cuda"):
        pick_device("cuda")
    assert pick_device("auto") == torch.device("cpu")


def test_device_cuda_with_a_gpu_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda") == torch.device("cuda", 0)
    assert pick_device("auto", local_rank=3) == torch.device("cuda", 1)


# ---- zoo eval: which data and split ------------------------------------------------------------------

def _eval(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    cli.main(["eval", "sentiment", *argv, "--device", "cpu"])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_without_data_scores_the_test_split_of_the_runs_own_data(run: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(run.parent)        # the run's --data, csv:reviews.csv, is relative to where it trained
    task = zoo.get_task("sentiment")
    held_out = len(task.datasets("csv:reviews.csv", "test"))
    assert 0 < held_out < 40
    for checkpoint in (run, run / "best", run / "step-2"):     # the run folder, or a checkpoint inside it
        result = _eval(["--checkpoint", str(checkpoint)], capsys)
        assert (result["data"], result["split"], result["n"]) == ("csv:reviews.csv", "test", held_out)
        assert 0.0 <= result["accuracy"] <= 1.0


def test_eval_with_data_scores_all_of_it_unless_split_is_given(run: Path, tmp_path: Path, capsys) -> None:
    other = write_reviews(tmp_path / "other.csv", 25, seed=1)
    result = _eval(["--checkpoint", str(run), "--data", f"csv:{other}"], capsys)
    assert (result["data"], result["split"], result["n"]) == (f"csv:{other}", "all", 25)
    held_out = len(zoo.get_task("sentiment").datasets(f"csv:{other}", "validation"))
    result = _eval(["--checkpoint", str(run), "--data", f"csv:{other}", "--split", "validation"], capsys)
    assert (result["split"], result["n"]) == ("validation", held_out) and held_out < 25


def test_eval_of_a_bare_model_folder_and_of_builtin_specs_scores_the_test_split(run, tmp_path, monkeypatch,
                                                                                capsys) -> None:
    task = zoo.get_task("sentiment")
    stand_in = task.datasets(f"csv:{run.parent / 'reviews.csv'}", "all")
    asked: list[tuple[str, str]] = []

    def datasets(self, spec: str, split: str):
        asked.append((spec, split))
        return stand_in

    monkeypatch.setattr(type(task), "datasets", datasets)   # the built-in set is not prepared here
    model = shutil.copytree(run / "best", tmp_path / "model")
    result = _eval(["--checkpoint", str(model)], capsys)
    assert asked == [("builtin", "test")] and (result["data"], result["split"], result["n"]) == ("builtin", "test", 40)
    _eval(["--checkpoint", str(model), "--data", "builtin:default"], capsys)
    _eval(["--checkpoint", str(run), "--data", "builtin", "--split", "validation"], capsys)
    assert asked[1:] == [("builtin:default", "test"), ("builtin", "validation")]


def test_input_file_lines_skip_blanks_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "inputs.txt"
    path.write_bytes("\ufefffirst line\n\n  \nsecond, ünïcode\r\nthird".encode("utf-8"))
    assert read_input_file(str(path)) == ["first line", "second, ünïcode", "third"]


# ---- range types and --backbone-args/--head-args keys -------------------------------------------------

@pytest.mark.parametrize("kind, text, ok", [
    (DECAY, "0.5", True), (DECAY, "0", False), (DECAY, "1", False), (DECAY, "nan", False), (DECAY, "x", False),
    (COUNT, "0", True), (COUNT, "7", True), (COUNT, "-1", False), (COUNT, "1.5", False),
    (POSITIVE, "1e-9", True), (POSITIVE, "0", False), (POSITIVE, "inf", False),
    (PROBABILITY, "0", True), (PROBABILITY, "1", True), (PROBABILITY, "1.01", False),
    (DROP_FRACTION, "0", True), (DROP_FRACTION, "0.99", True), (DROP_FRACTION, "1", False),
])
def test_range_types_accept_exactly_their_interval(kind: Range, text: str, ok: bool) -> None:
    if ok:
        assert kind(text) == kind.kind(text) and isinstance(kind(text), kind.kind)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected {re.escape(kind.describe())}, got '{text}'"):
            kind(text)


def test_factory_keys_come_from_the_config_or_the_signature() -> None:
    widgets = Registry("widget")
    widgets.register("configured", config={"width": 1, "depth": 2})(lambda **overrides: None)
    widgets.register("plain")(lambda backbone, size=1, *, colour="red": None)
    widgets.register("open")(lambda backbone, **anything: None)
    assert factory_keys(widgets, "configured") == ["depth", "width"]
    assert factory_keys(widgets, "plain", reserved=("backbone",)) == ["colour", "size"]
    assert factory_keys(widgets, "open") is None
    check_factory_args(widgets, "open", {"whatever": 1}, "--head-args")            # **kwargs: not checked
    check_factory_args(widgets, "plain", {"size": 2, "colour": "blue"}, "--head-args")
    with pytest.raises(ZooError, match=r"--head-args: widget 'plain' has no argument 'sise' \(it takes colour, "
                                       r"size\); did you mean 'size'\?"):
        check_factory_args(widgets, "plain", {"sise": 2}, "--head-args", reserved=("backbone",))
    with pytest.raises(KeyError, match="unknown widget 'plian'; did you mean 'plain'"):
        check_factory_args(widgets, "plian", None, "--head-args")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_predict_offers_generation_flags_only_to_tasks_that_generate(name: str) -> None:
    task = zoo.get_task(name)
    text = COMMANDS.meta("predict")["parser"](task).format_help()
    assert ("--beams" in text and "--top-k" in text) == task.generates
    assert task.generates == (name in {"text_generation", "translation", "asr", "speech_translation", "captioning"})
