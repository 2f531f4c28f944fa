"""`zoo train TASK --config FILE` and `--print-config`: keys, overrides, refusals, round trips."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import zoo
from tasks.engine.commands import train_args, train_command
from tasks.engine.config import config_defaults, read_config_file
from tests.test_cli import TINY_BACKBONE, write_reviews
from zoo import cli
from zoo.errors import ZooError

SENTIMENT = zoo.get_task("sentiment")


def write(path: Path, values: dict) -> Path:
    path.write_text(json.dumps(values) if path.suffix == ".json" else yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["run.yaml", "run.yml", "run.json"])
def test_file_values_take_dashes_or_underscores_and_flags_override_them(tmp_path: Path, name: str) -> None:
    config = write(tmp_path / name, {"batch-size": 8, "max_steps": 3, "--lr": 0.5, "logger": ["csv"],
                                     "head_args": {"dropout": 0.2}, "pretrained": None, "freeze-backbone": True})
    args = train_args(SENTIMENT, ["--config", str(config), "--lr", "0.25"])
    assert (args.batch_size, args.max_steps, args.logger, args.head_args) == (8, 3, ["csv"], {"dropout": 0.2})
    assert args.lr == 0.25                            # the command line wins over the file
    assert args.freeze_backbone is True and args.init_backbone is None
    assert args.weight_decay == SENTIMENT.train_defaults["weight_decay"]    # keys left out keep the task's default
    assert train_args(SENTIMENT, ["--config", str(config), "--batch-size", "4"]).batch_size == 4


def test_yaml_exponent_floats_and_quoted_numbers_go_through_the_flags_type(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("lr: 1e-3\nbatch_size: '16'\n")      # YAML 1.1 reads 1e-3 as a string
    args = train_args(SENTIMENT, ["--config", str(config)])
    assert args.lr == pytest.approx(1e-3) and args.batch_size == 16


@pytest.mark.parametrize("values, expected", [
    ({"batchsize": 8}, "unknown key 'batchsize' (it is no flag of this command); did you mean '--batch-size'"),
    ({"learning-rate": 0.1}, "unknown key 'learning-rate'"),
    ({"batch_size": 3.5}, "key 'batch_size' (--batch-size): expected an integer >= 1, got '3.5'"),
    ({"batch_size": 0}, "key 'batch_size' (--batch-size): expected an integer >= 1, got '0'"),
    ({"batch_size": True}, "key 'batch_size' (--batch-size): expected an integer >= 1, got True"),
    ({"lr": "fast"}, "key 'lr' (--lr): expected a number > 0, got 'fast'"),
    ({"precision": "fp61"}, "key 'precision' (--precision): invalid choice 'fp61' (choose from fp32, bf16, fp16, auto); "
                            "did you mean 'fp16'?"),
    ({"logger": "csv"}, "key 'logger' (--logger): expected a list, got 'csv'"),
    ({"logger": ["csv", "wandb"]}, "key 'logger' (--logger): invalid choice 'wandb'"),
    ({"freeze_backbone": "yes"}, "key 'freeze_backbone' (--freeze-backbone): expected true or false, got 'yes'"),
    ({"head_args": [1]}, "key 'head_args' (--head-args): expected"),
    ({"data": 5}, "key 'data' (--data): expected a string, got 5"),
    ({"batch_size": None}, "key 'batch_size' (--batch-size): null is not allowed here"),
])
def test_unknown_keys_and_wrong_types_are_refused_naming_file_key_and_flag(tmp_path: Path, values: dict,
                                                                           expected: str) -> None:
    config = write(tmp_path / "run.yaml", values)
    with pytest.raises(ZooError, match="^" + re.escape(f"--config {config}: {expected}")):
        train_args(SENTIMENT, ["--config", str(config)])


@pytest.mark.parametrize("name, text, expected", [
    ("run.toml", "lr = 1", "unknown file type '.toml'; pass a .yaml, .yml or .json file"),
    ("run.yaml", "lr: [1\n", "not valid YAML"),
    ("run.json", "{'lr': 1}", "not valid JSON"),
    ("run.yaml", "- lr\n- 1\n", "expected a mapping of flag names to values, got list"),
])
def test_unreadable_files_are_refused_in_one_line(tmp_path: Path, name: str, text: str, expected: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ZooError, match=expected) as error:
        read_config_file(tmp_path / name)
    assert str(error.value).startswith(f"--config {tmp_path / name}: ") and "\n" not in str(error.value)
    with pytest.raises(ZooError, match="no such file"):
        read_config_file(tmp_path / "missing.yaml")


def test_a_bad_config_is_one_line_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "run.yaml", {"batchsize": 8})
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "sentiment", "--config", str(config)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "zoo: error: --config" in err and "did you mean '--batch-size'" in err


@pytest.mark.parametrize("fmt, suffix", [("yaml", ".yaml"), ("json", ".json")])
def test_print_config_prints_what_config_reads_back_and_trains_nothing(tmp_path: Path, fmt: str, suffix: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--batch-size", "8", "--lr", "0.002", "--logger", "csv", "tensorboard", "--backbone-args", TINY_BACKBONE,
            "--out", str(tmp_path / "never")]
    assert train_command(SENTIMENT, [*argv, "--print-config", fmt]) is None
    printed = capsys.readouterr().out
    values = yaml.safe_load(printed) if fmt == "yaml" else json.loads(printed)
    assert values["batch_size"] == 8 and values["lr"] == 0.002 and values["vocab_size"] == 8000   # a task flag
    assert "config" not in values and "print_config" not in values and not (tmp_path / "never").exists()
    (tmp_path / f"printed{suffix}").write_text(printed)
    again = train_args(SENTIMENT, ["--config", str(tmp_path / f"printed{suffix}")])
    assert {**vars(again), "config": None} == {**vars(train_args(SENTIMENT, argv)), "config": None}


def test_a_runs_args_json_is_a_config_that_repeats_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_reviews(tmp_path / "reviews.csv", 40, seed=0)
    monkeypatch.chdir(tmp_path)
    first = train_command(SENTIMENT, ["--data", "csv:reviews.csv", "--out", "first", "--max-steps", "2",
                                      "--batch-size", "8", "--vocab-size", "30", "--backbone-args", TINY_BACKBONE,
                                      "--device", "cpu", "--no-progress", "--logger", "none"])
    saved = json.loads((first / "args.json").read_text())
    second = train_command(SENTIMENT, ["--config", str(first / "args.json"), "--out", "second"])
    repeated = json.loads((second / "args.json").read_text())
    assert {**repeated, "out": "first", "config": None} == saved
    assert [json.loads(r)["train_loss"] for r in (second / "metrics.jsonl").read_text().splitlines()] == \
        [json.loads(r)["train_loss"] for r in (first / "metrics.jsonl").read_text().splitlines()]


def test_config_defaults_keys_the_values_by_dest() -> None:
    from tasks.engine.commands import command_parser

    parser = command_parser("train", SENTIMENT)
    values = config_defaults(parser, {"pretrained": "x", "print-config": "json", "config": "a.yaml"}, "f.yaml")
    assert values == {"init_backbone": "x"}           # --config / --print-config in a file are provenance, not settings


@pytest.mark.parametrize("name", zoo.list_tasks())
def test_every_tasks_printed_defaults_read_back_unchanged(name: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    task = zoo.get_task(name)
    train_command(task, ["--print-config"])
    (tmp_path / "defaults.yaml").write_text(capsys.readouterr().out)
    again = train_args(task, ["--config", str(tmp_path / "defaults.yaml")])
    assert {**vars(again), "config": None} == vars(train_args(task, []))
