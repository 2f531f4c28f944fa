"""Bad command lines through the real ``zoo`` CLI: each exits non-zero with exactly one line on stderr
naming the problem, no traceback, nothing written or changed outside the test's folders, and the
run trained before them still loads.

Commands run in-process (``zoo.cli.main``) with cwd, HOME and ZOO_DATA in a temporary folder;
``bench`` and ``demo``, which exec a new interpreter, run as subprocesses.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from benchmarks.run import main as bench_main
from tasks.engine.demo import main as demo_main
from tests.test_cli import train_tiny_run
from zoo import cli

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", "__pycache__", ".pytest_cache", ".venv"}  # .venv: 30k installed files, walked twice per case

TRAIN = ["train", "sentiment"]
TG_PREDICT = ["predict", "text_generation", "--checkpoint", "run", "once upon"]

# (argv, words the one stderr line must contain); paths are relative to the workspace (the cwd)
CASES: list[tuple[list[str], tuple[str, ...]]] = [
    # commands, tasks, listing, data
    (["trian"], ("unknown command 'trian'", "did you mean 'train'")),
    (["lst", "tasks"], ("unknown command 'lst'", "'list'")),
    (["--verison"], ("--verison", "did you mean '--version'")),
    (["list"], ("kind",)),
    (["list", "backbone"], ("'backbone'", "did you mean 'backbones'")),
    (["list", "backbones", "foo"], ("no backbone matches 'foo'", "zoo list backbones")),
    (["list", "heads", "clasification"], ("no head matches", "did you mean 'classification'")),
    (["list", "tasks", "sentimnt"], ("no task matches", "'sentiment'")),
    (["data", "prepar"], ("'prepar'", "did you mean 'prepare'")),
    (["data", "prepare", "sentimnt"], ("unknown task 'sentimnt'", "did you mean 'sentiment'")),
    (["data", "prepare", "--quik"], ("--quik", "did you mean '--quick'")),
    (["data", "prepare", "sentiment", "--set", "imbd"], ("unknown built-in sentiment set 'imbd'",)),
    (["train"], ("needs a TASK", "sentiment")),
    (["train", "sentimnt"], ("unknown task 'sentimnt'", "did you mean 'sentiment'")),
    (["train", "--lr", "1", "sentiment"], ("put the TASK before the flags",)),
    (["eval", "transation", "--checkpoint", "run"], ("unknown task 'transation'", "'translation'")),
    (["predict", "sentiment_analysis", "--checkpoint", "run", "hi"], ("unknown task", "'sentiment'")),
    # training flags: typos, types, ranges, choices
    ([*TRAIN, "--lrr", "0.1"], ("--lrr", "did you mean '--lr'")),
    ([*TRAIN, "--batchsize", "8"], ("--batchsize", "'--batch-size'")),
    ([*TRAIN, "--image-size", "32"], ("unrecognized arguments: --image-size",)),
    ([*TRAIN, "--batch-size", "0"], ("--batch-size", ">= 1", "'0'")),
    ([*TRAIN, "--batch-size", "-3"], ("--batch-size", ">= 1")),
    ([*TRAIN, "--batch-size", "eight"], ("--batch-size", "'eight'")),
    ([*TRAIN, "--lr", "0"], ("--lr", "> 0")),
    ([*TRAIN, "--lr=-1e-3"], ("--lr", "> 0")),
    ([*TRAIN, "--lr", "-1e-3"], ("--lr", "expected one argument", "--flag=VALUE")),
    ([*TRAIN, "--lr", "nan"], ("--lr", "'nan'")),
    ([*TRAIN, "--epochs", "0"], ("--epochs", "> 0")),
    ([*TRAIN, "--max-steps", "0"], ("--max-steps", ">= 1")),
    ([*TRAIN, "--max-steps", "2.5"], ("--max-steps", "integer")),
    ([*TRAIN, "--accumulate", "0"], ("--accumulate", ">= 1")),
    ([*TRAIN, "--ema", "1.5"], ("--ema", "(0, 1)")),
    ([*TRAIN, "--ema", "0"], ("--ema", "(0, 1)")),
    ([*TRAIN, "--time-budget", "-5"], ("--time-budget", "> 0")),
    ([*TRAIN, "--grad-clip", "-1"], ("--grad-clip", ">= 0")),
    ([*TRAIN, "--warmup-steps", "-1"], ("--warmup-steps", ">= 0")),
    ([*TRAIN, "--eval-every", "-2"], ("--eval-every", ">= 0")),
    ([*TRAIN, "--patience", "-1"], ("--patience", ">= 0")),
    ([*TRAIN, "--checkpoint-every", "-1"], ("--checkpoint-every", ">= 0")),
    ([*TRAIN, "--workers", "-1"], ("--workers", ">= 0")),
    ([*TRAIN, "--weight-decay", "-0.1"], ("--weight-decay", ">= 0")),
    ([*TRAIN, "--precision", "fp8"], ("--precision", "'fp8'", "fp32, bf16, fp16")),
    ([*TRAIN, "--device", "gpu"], ("--device", "'gpu'", "auto, cpu, cuda")),
    # the tasks' own flags
    ([*TRAIN, "--token-dropout", "1"], ("--token-dropout", "[0, 1)")),
    ([*TRAIN, "--max-len", "0"], ("--max-len", ">= 1")),
    ([*TRAIN, "--vocab-size", "2"], ("--vocab-size", ">= 5")),
    (["train", "image_classification", "--hflip", "1.5"], ("--hflip", "[0, 1]")),
    (["train", "image_classification", "--crop-scale", "0"], ("--crop-scale", "(0, 1]")),
    (["train", "image_classification", "--image-size", "0"], ("--image-size", ">= 1")),
    (["train", "image_classification", "--mixup", "-1"], ("--mixup", ">= 0")),
    (["train", "image_classification", "--augment", "randaugmnt"], ("--augment", "'randaugmnt'")),
    (["train", "asr", "--speed-perturb", "0.9", "-1"], ("--speed-perturb", "> 0")),
    (["train", "asr", "--units", "chars"], ("--units", "did you mean 'char'")),
    (["train", "translation", "--eval-beams", "0"], ("--eval-beams", ">= 1")),
    (["train", "text_generation", "--block-size", "0"], ("--block-size", ">= 1")),
    (["train", "text_generation", "--tokenizer-type", "bpee"], ("--tokenizer-type", "did you mean 'bpe'")),
    (["train", "detection", "--transform", "{bad"], ("--transform", "not valid JSON")),
    # --backbone/--head and their JSON arguments
    ([*TRAIN, "--backbone-args", "{dim: 16}"], ("--backbone-args", "not valid JSON")),
    ([*TRAIN, "--backbone-args", "[16]"], ("--backbone-args", "JSON object")),
    ([*TRAIN, "--head-args", "not json"], ("--head-args", "not valid JSON")),
    ([*TRAIN, "--backbone-args", '{"dimm": 16}'], ("--backbone-args", "'dimm'", "did you mean 'dim'", "depth")),
    ([*TRAIN, "--head-args", '{"poool": "mean"}'], ("--head-args", "'poool'", "did you mean 'pool'")),
    (["train", "text_generation", "--head-args", '{"tied": true}'], ("--head-args", "'lm'", "no arguments")),
    (["train", "detection", "--head", "fcos", "--head-args", '{"towers": 2}'], ("'fcos'", "'towers'")),
    ([*TRAIN, "--backbone", "text_encoder_tinyy"], ("unknown backbone", "'text_encoder_tiny'")),
    ([*TRAIN, "--head", "clasification"], ("unknown head", "'classification'")),
    # data SPECs, run folders, checkpoints to resume or transfer from
    ([*TRAIN, "--data", "foo"], ("--data 'foo'", "FORMAT:PATH")),
    ([*TRAIN, "--data", ""], ("empty --data SPEC",)),
    ([*TRAIN, "--data", "csv:missing.csv", "--out", "new"], ("missing.csv",)),
    ([*TRAIN, "--data", "xyz:reviews.csv", "--out", "new"], ("unknown format 'xyz'", "csv:PATH")),
    ([*TRAIN, "--data", "csv:reviews.csv?text=body", "--out", "new"], ("body",)),
    ([*TRAIN, "--data", "csv:reviews.csv", "--out", "run"], ("already holds checkpoints", "--resume", "--out")),
    ([*TRAIN, "--resume", "nowhere"], ("--resume", "nowhere", "does not exist")),
    (["train", "translation", "--resume", "run"], ("is a sentiment model", "zoo train sentiment")),
    ([*TRAIN, "--init-backbone", "nowhere"], ("--pretrained nowhere", "no such file or folder, nor a catalog")),
    # zoo eval
    (["eval", "sentiment"], ("required", "--checkpoint")),
    (["eval", "sentiment", "--checkpoint", "nowhere"], ("--checkpoint", "nowhere", "does not exist")),
    (["eval", "sentiment", "--checkpoint", "reviews.csv"], ("--checkpoint", "reviews.csv", "is a file, not a model folder")),
    (["eval", "sentiment", "--checkpoint", "empty"], ("--checkpoint", "empty", "config.json")),
    (["eval", "translation", "--checkpoint", "run"], ("is a sentiment model", "use `zoo eval sentiment`")),
    (["eval", "sentiment", "--checkpoint", "run", "--split", "tset"], ("--split", "did you mean 'test'")),
    (["eval", "sentiment", "--checkpoint", "run", "--data", "foo"], ("--data 'foo'",)),
    (["eval", "sentiment", "--checkpoint", "run", "--data", "csv:missing.csv"], ("missing.csv",)),
    (["eval", "sentiment", "--checkpoint", "run", "--data", "builtin"], ("zoo data prepare sentiment",)),
    (["eval", "sentiment", "--checkpoint", "run", "--batch-size", "0"], ("--batch-size", ">= 1")),
    (["eval", "sentiment", "--checkpoint", "run", "--precision", "bf61"], ("--precision", "'bf16'")),
    # zoo predict
    (["predict", "translation", "--checkpoint", "run", "hello"], ("is a sentiment model", "zoo predict sentiment")),
    (["predict", "sentiment", "--checkpoint", "run"], ("INPUT", "--input-file")),
    (["predict", "sentiment", "hello"], ("required", "--checkpoint")),
    (["predict", "sentiment", "--checkpoint", "run", "--input-file", "missing.txt"], ("--input-file", "missing.txt")),
    (["predict", "sentiment", "--checkpoint", "run", "--input-file", "latin1.txt"], ("--input-file", "latin1.txt", "not UTF-8", "line 2")),
    (["predict", "sentiment", "--checkpoint", "run", "--input-file", "empty"], ("--input-file", "folder")),
    (["predict", "sentiment", "--checkpoint", "run", ""], ("input 1 is an empty text",)),
    (["predict", "sentiment", "--checkpoint", "run", "--jsn", "hi"], ("--jsn", "did you mean '--json'")),
    (["predict", "sentiment", "--checkpoint", "run", "--device", "tpu", "hi"], ("--device", "'tpu'")),
    ([*TG_PREDICT, "--top-p", "2"], ("--top-p", "[0, 1]")),
    ([*TG_PREDICT, "--temperature", "-1"], ("--temperature", ">= 0")),
    ([*TG_PREDICT, "--beams", "0"], ("--beams", ">= 1")),
    ([*TG_PREDICT, "--top-k", "-1"], ("--top-k", ">= 0")),
    ([*TG_PREDICT, "--max-new-tokens", "-1"], ("--max-new-tokens", ">= 0")),
    (["predict", "detection", "--checkpoint", "run", "--score-threshold", "1.5", "x.png"], ("--score-threshold",)),
    (["predict", "image_classification", "--checkpoint", "run", "--top-classes", "0", "x.png"], ("--top-classes",)),
    (["predict", "translation", "--checkpoint", "run", "--batch-size", "0", "hi"], ("--batch-size", ">= 1")),
]

# `zoo bench` and `zoo demo` exec a new interpreter (seconds of imports each): two run as subprocesses, in
# parallel; the rest call the entry points those run, in-process
SUBPROCESS_CASES: list[tuple[list[str], tuple[str, ...]]] = [
    (["bench", "--task", "sentimnt"], ("unknown task 'sentimnt'", "did you mean 'sentiment'")),
    (["demo", "--budget", "-1"], ("--budget", "> 0")),
]
HANDED_OVER_CASES: list[tuple[list[str], tuple[str, ...]]] = [
    (["bench", "sentimnt"], ("unknown task 'sentimnt'", "'sentiment'")),
    (["bench", "--rounds", "0"], ("--rounds", ">= 1")),
    (["bench", "--block-seconds", "0"], ("--block-seconds", "> 0")),
    (["bench", "--threads", "0"], ("--threads", ">= 1")),
    (["bench", "--suite", "task"], ("--suite", "did you mean 'tasks'")),
    (["bench", "--task", "asr", "--suite", "backbones"], ("--task", "--suite backbones")),
    (["demo", "--task", "sentimnt"], ("unknown task 'sentimnt'", "'sentiment'")),
    (["demo", "--budgte", "5"], ("--budgte", "did you mean '--budget'")),
]


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every file, link and folder under ``root`` (caches skipped) with its size, mtime and content hash."""
    seen: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                seen[key] = ("link", os.readlink(path))
            elif path.is_file():
                stat = path.stat()
                seen[key] = (stat.st_size, stat.st_mtime_ns, hashlib.sha1(path.read_bytes()).hexdigest())
            else:
                seen[key] = ("folder",)
    return seen


def _outside_home(snapshot: dict[str, tuple]) -> dict[str, tuple]:
    """A snapshot less HOME (a temporary folder: libraries may cache there, e.g. matplotlib's font list)."""
    return {k: v for k, v in snapshot.items() if k != "home" and not k.startswith("home" + os.sep)}


def _repo_snapshot() -> dict[str, tuple]:
    """Names, sizes and mtimes of the repository's files (no hashing: it is large)."""
    seen = {}
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            stat = (Path(folder) / name).lstat()
            seen[os.path.join(folder, name)] = (stat.st_size, stat.st_mtime_ns)
    return seen


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cwd of every case: the tiny run, its CSV, an empty folder, a Latin-1 input file; HOME and ZOO_DATA inside."""
    root = tmp_path_factory.mktemp("cli-errors")
    train_tiny_run(root)
    (root / "empty").mkdir()
    (root / "home").mkdir()
    (root / "data").mkdir()
    (root / "latin1.txt").write_bytes("a fine film\nun film médiocre\n".encode("latin-1"))
    return root


@pytest.fixture
def isolated(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("HOME", str(workspace / "home"))
    monkeypatch.setenv("ZOO_DATA", str(workspace / "data"))
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    return workspace


def _check(status: object, out: str, err: str, words: tuple[str, ...]) -> None:
    assert status not in (0, None), f"exit status {status!r}; stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("zoo: error: ")
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert "Traceback" not in out + err


def _run_still_loads(workspace: Path) -> None:
    model = zoo.load(workspace / "run" / "best")
    assert model.task == "sentiment" and model.tokenizer is not None


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(argv)[:60] for argv, _ in CASES])
def test_bad_command_prints_one_line(argv: list[str], words: tuple[str, ...], isolated: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    before, repo_before = _snapshot(isolated), _repo_snapshot()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    captured = capsys.readouterr()
    _check(exit_info.value.code, captured.out, captured.err, words)
    assert _snapshot(isolated) == before, "the command wrote or changed files"
    assert _repo_snapshot() == repo_before, "the command wrote into the repository"
    _run_still_loads(isolated)


@pytest.mark.parametrize("argv, words", HANDED_OVER_CASES, ids=[" ".join(argv) for argv, _ in HANDED_OVER_CASES])
def test_bad_bench_and_demo_flags_print_one_line(argv: list[str], words: tuple[str, ...], isolated: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    main = {"bench": bench_main, "demo": demo_main}[argv[0]]     # what `zoo bench|demo` execs
    before, repo_before = _snapshot(isolated), _repo_snapshot()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv[1:])
    captured = capsys.readouterr()
    _check(exit_info.value.code, captured.out, captured.err, words)
    assert _snapshot(isolated) == before and _repo_snapshot() == repo_before
    _run_still_loads(isolated)


def test_there_are_at_least_60_cases() -> None:
    assert len(CASES) + len(SUBPROCESS_CASES) + len(HANDED_OVER_CASES) >= 60


@pytest.fixture(scope="module")
def subprocess_results(workspace: Path) -> dict[str, tuple]:
    """(status, stdout, stderr) of each subprocess case, run in parallel; also the snapshots around them."""
    env = {**os.environ, "HOME": str(workspace / "home"), "ZOO_DATA": str(workspace / "data"),
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("ZOO_DEBUG", None)
    before, repo_before = _snapshot(workspace), _repo_snapshot()
    running = {" ".join(argv): subprocess.Popen([sys.executable, "-m", "zoo.cli", *argv], cwd=workspace, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for argv, _ in SUBPROCESS_CASES}
    results = {key: (process.wait(timeout=120), *process.communicate()) for key, process in running.items()}
    results["unchanged"] = (_outside_home(_snapshot(workspace)) == _outside_home(before),
                            _repo_snapshot() == repo_before)
    return results


@pytest.mark.parametrize("argv, words", SUBPROCESS_CASES, ids=[" ".join(argv) for argv, _ in SUBPROCESS_CASES])
def test_bad_bench_and_demo_commands_print_one_line(argv: list[str], words: tuple[str, ...], workspace: Path,
                                                    subprocess_results: dict[str, tuple]) -> None:
    status, out, err = subprocess_results[" ".join(argv)]
    _check(status, out, err, words)
    assert subprocess_results["unchanged"] == (True, True)
    _run_still_loads(workspace)


def test_good_commands_still_work_after_the_bad_ones(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"zoo {zoo.__version__}"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "(default: 32)" in " ".join(out.split())
    cli.main(["predict", "sentiment", "--checkpoint", "run", "a great film", "--device", "cpu"])
    label = capsys.readouterr().out.split("\t")[0]
    assert label in ("negative", "positive")


@pytest.mark.parametrize("task", zoo.list_tasks())
def test_python_m_task_train_prints_the_same_one_line(task: str, isolated: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m tasks.TASK.train`` goes through the same CLI, so its errors are one line too."""
    module = importlib.import_module(f"tasks.{task}.train")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--batch-size", "0"])
    captured = capsys.readouterr()
    _check(exit_info.value.code, captured.out, captured.err, ("--batch-size", f"zoo train {task} --help"))
