"""``--precision auto``: the rule from the device and the CPU flags (set both ways, never read from the
host), the one bf16 probe the image task and the benchmark runner share, and what a run records."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import run
from tasks.engine import precision
from tasks.engine.precision import auto_precision, has_bf16_units, resolve_precision
from tasks.engine.trainer import train
from tests.test_sentiment_task import TINY, files, task  # noqa: F401 (fixtures)
from tests.test_trainer import ToyTask, make_args

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
AVX2 = {"avx2", "fma"}


@pytest.mark.parametrize("flags, expected", [
    (AVX2, "fp32"),
    (AVX2 | {"avx512_bf16"}, "fp32"),                           # bf16 dot products without AMX: fp32
    (AVX2 | {"avx512_bf16", "amx_bf16", "amx_tile"}, "bf16"),
    ({"amx_bf16", "amx_tile"}, "bf16"),
])
def test_auto_on_a_cpu_follows_its_flags(monkeypatch, flags: set[str], expected: str) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert auto_precision(CPU) == expected
    assert resolve_precision("auto", CPU, ("fp32", "bf16")) == expected


@pytest.mark.parametrize("bf16, expected, without_fp16", [(True, "bf16", "bf16"), (False, "fp16", "fp32")])
def test_auto_on_cuda_follows_bf16_support(monkeypatch, bf16: bool, expected: str, without_fp16: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})       # the CPU plays no part on CUDA
    assert auto_precision(CUDA) == expected
    assert auto_precision(CUDA, ("fp32", "bf16")) == without_fp16     # eval and bench have no fp16


def test_an_explicit_precision_is_kept(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})
    assert [resolve_precision(p, CPU, ("fp32", "bf16")) for p in ("fp32", "bf16")] == ["fp32", "bf16"]


@pytest.mark.parametrize("flags, expected", [(AVX2, False), (AVX2 | {"avx512_bf16"}, True), ({"amx_bf16"}, True)])
def test_one_bf16_probe_for_the_bench_default(monkeypatch, flags: set[str], expected: bool) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert has_bf16_units(CPU) is expected
    assert run.default_precisions(CPU) == (["fp32", "bf16"] if expected else ["fp32"])   # the image task's
    # default uses the same probe: tests/test_image_classification_task.py sets it both ways


def test_cpu_flags_reads_proc_cpuinfo(monkeypatch, tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n")
    real = precision.Path
    monkeypatch.setattr(precision, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real(p))
    assert precision.cpu_flags() == {"fpu", "avx2", "amx_bf16"}


@pytest.mark.parametrize("flags, expected", [(AVX2, "fp32"), ({"amx_bf16"}, "bf16")])
def test_train_records_what_auto_chose(tmp_path, monkeypatch, capsys, flags: set[str], expected: str) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    toy = ToyTask()
    out = tmp_path / "run"
    train(toy, make_args(toy, "--precision", "auto", "--device", "cpu", "--max-steps", 2, "--batch-size", 4,
                          "--out", out))
    assert json.loads((out / "args.json").read_text())["precision"] == expected
    printed = capsys.readouterr()
    assert f"--precision auto: {expected} on cpu" in printed.out + printed.err
    assert f"s, {expected})" in printed.out + printed.err                  # the summary line


@pytest.mark.parametrize("flags, expected", [(AVX2, "fp32"), ({"amx_bf16"}, "bf16")])
def test_eval_reports_what_auto_chose(task, files, tmp_path, monkeypatch,  # noqa: F811 (the fixtures)
                                      flags: set[str], expected: str) -> None:
    run = task.command("train", ["--data", f"csv:{files['train']}", "--out", str(tmp_path / "run"),
                                 "--backbone", "text_encoder_tiny", "--backbone-args", json.dumps(TINY),
                                 "--vocab-size", "64", "--max-steps", "1", "--batch-size", "4", "--device", "cpu",
                                 "--no-progress"])
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    result = task.command("eval", ["--checkpoint", str(run), "--data", f"csv:{files['test']}", "--device", "cpu",
                                   "--precision", "auto", "--no-progress"])
    assert result["precision"] == expected and 0 <= result["accuracy"] <= 1
