"""`python -m benchmarks --suite deploy` (issue 14 item 6): from tiny trained runs the tests write, the suite
builds every variant of a classifier (sentiment) and a generator (text generation) and reports sane figures;
a missing run is refused in one line naming the command that makes it; a variant that fails is a row saying why.
Generating models are timed by their decoding (benchmarks/deploy_decode.py): the PyTorch and ONNX workloads
make the same tokens, the ONNX language model's teacher-forced logits are PyTorch's, and translation's
ONNX rows are timed and scored by BLEU."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zoo
from benchmarks import deploy, deploy_decode
from benchmarks.run import main
from tasks.engine.commands import train_command
from tests.test_export_generation import _built as _built_generator
from tests.test_sentiment_task import _reviews, _write_csv
from tests.test_task_contract import FIXTURES

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = json.dumps({"dim": 32, "depth": 1, "heads": 2})
FAST = ["--rounds", "2", "--block-seconds", "0.01", "--warmup", "1", "--finetune-steps", "2",
        "--distill-steps", "2", "--deploy-batch", "4", "--threads", "1", "--no-progress"]
COMMON = ["--max-steps", "3", "--batch-size", "8", "--backbone-args", TINY, "--no-progress", "--eval-every", "0"]


def _sentences(count: int) -> str:
    words = "the cat sat on a mat and the dog ran to the red ball".split()
    return "\n".join(" ".join(words[(i + j) % len(words)] for j in range(8)) for i in range(count))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUNS/sentiment, trained 3 steps on reviews written here."""
    root = tmp_path_factory.mktemp("deploy")
    reviews = _write_csv(root / "reviews.csv", _reviews(40, seed=3))
    train_command(zoo.get_task("sentiment"), ["--data", f"csv:{reviews}", "--out", str(root / "runs" / "sentiment"),
                                              "--vocab-size", "64", "--max-len", "32", *COMMON])
    return root / "runs"


def _train_generator(runs: Path) -> None:
    """RUNS/text_generation, trained 3 steps on lines written here."""
    text = runs.parent / "lines.txt"
    text.write_text(_sentences(60) + "\n", encoding="utf-8")
    train_command(zoo.get_task("text_generation"), ["--data", f"text:{text}?sample_by=line", "--out",
                                                    str(runs / "text_generation"), "--vocab-size", "64",
                                                    "--block-size", "16", *COMMON])


def _suite(runs: Path, out: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    status = main(["--suite", "deploy", "--runs", str(runs), "--out", str(out), *FAST, *extra])
    results = sorted(out.glob("deploy-*.json"))
    return status, json.loads(results[-1].read_text())["rows"] if results else []


@pytest.mark.slow     # builds twelve variants (two ONNX exports, a fine-tune, a distillation): about a minute
def test_every_variant_of_a_classifier_and_a_generator(runs: Path, tmp_path: Path) -> None:
    _train_generator(runs)
    status, rows = _suite(runs, tmp_path, "--task", "sentiment", "text_generation")
    assert status == 0
    by = {(r["task"], r["variant"]): r for r in rows}
    assert set(by) == {(t, v) for t in ("sentiment", "text_generation") for v in deploy.VARIANTS}
    for task in ("sentiment", "text_generation"):
        fp32 = by[task, "fp32"]
        for variant in deploy.VARIANTS:
            row = by[task, variant]
            assert not row.get("error"), row
            assert ("decoding" in row["speed"]) == (task == "text_generation")
            assert row["megabytes"] > 0
            for label in ("batch1", "batched"):
                assert (row[label] is None) == (variant == "fp32")
                if row[label]:
                    assert math.isfinite(row[label]["ratio"]) and row[label]["ratio"] > 0
        assert by[task, "int8"]["megabytes"] < fp32["megabytes"]
        assert by[task, "pruned"]["parameters"] < fp32["parameters"]
        assert by[task, "distilled"]["parameters"] < fp32["parameters"]
    assert by["sentiment", "onnx-int8"]["megabytes"] < by["sentiment", "onnx"]["megabytes"]
    assert by["text_generation", "onnx"]["metric"] == pytest.approx(by["text_generation", "fp32"]["metric"], abs=1e-4)
    for variant in ("fp32", "onnx", "onnx-int8", "int8", "pruned", "distilled"):
        assert 0.0 <= by["sentiment", variant]["metric"] <= 1.0
    assert by["sentiment", "onnx"]["metric"] == pytest.approx(by["sentiment", "fp32"]["metric"], abs=1e-9)
    assert all(r["metric"] > 0 for (t, _), r in by.items() if t == "text_generation" and not r.get("error"))
    table = next(tmp_path.glob("deploy-*.md")).read_text()
    assert "| sentiment | onnx-int8 |" in table and "| text_generation | onnx-int8 | " in table
    assert "Speed of text_generation: greedy decoding of 32 new tokens" in table
    # a rerun reuses what was built: the cache's build records are untouched
    record = tmp_path / deploy.CACHE / "sentiment" / "pruned" / deploy.BUILT
    stamp = record.stat().st_mtime_ns
    assert _suite(runs, tmp_path, "--task", "sentiment", "--variants", "pruned")[0] == 0
    assert record.stat().st_mtime_ns == stamp


def test_a_missing_run_names_the_command_that_makes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runs" / "sentiment").mkdir(parents=True)      # present; asr's run is not
    status, rows = _suite(tmp_path / "runs", tmp_path / "out", "--task", "sentiment", "asr")
    assert status == 2 and rows == []
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no trained run" in error and "asr" in error and "zoo train asr --data builtin:" in error


def test_a_variant_that_fails_is_a_row_with_its_reason(runs: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("pruning exploded")

    monkeypatch.setattr(deploy, "prune", broken)
    status, rows = _suite(runs, tmp_path, "--task", "sentiment", "--variants", "fp32", "pruned")
    assert status == 0
    by = {r["variant"]: r for r in rows}
    assert "pruning exploded" in by["pruned"]["error"] and not by["fp32"].get("error")


def test_a_ctc_exports_log_probabilities_reach_the_head_as_its_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = np.log(np.full((1, 3, 4), 0.25, dtype=np.float32))   # (B, T, V) log-probabilities

    class Graph:
        sidecar = {"inputs": [{"name": "inputs"}]}

        def __init__(self, folder: Path) -> None:
            pass

        def run(self, **arrays: np.ndarray) -> dict[str, np.ndarray]:
            return {"log_probs": frames, "lengths": np.array([3])}

    monkeypatch.setattr(deploy, "Exported", Graph)
    outputs = deploy.ExportedForward(torch.nn.Identity(), Path("."))({"inputs": torch.zeros(1, 8)})
    assert set(outputs) == {"logits", "lengths"}
    assert torch.equal(outputs["logits"].log_softmax(-1), torch.from_numpy(frames))   # what CTC decoding reads


# ---- generating models: timed by decoding -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["text_generation", "translation"])
def test_pytorch_and_onnx_decode_workloads_make_the_same_tokens(name: str,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    model, _, _, onnx_folder = _built_generator(name, tmp_path_factory)
    task = zoo.get_task(name)
    spec, _ = FIXTURES[name].write(tmp_path_factory.mktemp("data"))
    batch = deploy.test_batch(task, model, task.datasets(spec, "all"), 3)
    exported = deploy.load_variant("onnx", onnx_folder, model)
    assert isinstance(exported, deploy_decode.ExportedGenerator)
    workloads = [deploy_decode.decode_workload(v, m, batch, 3, 5) for v, m in (("fp32", model), ("onnx", exported))]
    assert [w.items for w in workloads] == [15, 15] and workloads[0].unit == "new tokens"
    with torch.inference_mode():
        rows = [w.step() for w in workloads]
    assert rows[0] == rows[1] and [len(row) for row in rows[0]] == [5, 5, 5]    # no stop token: every step runs
    prompt = deploy_decode.decode_batch(model, batch, 5)["inputs"]
    assert prompt.shape[0] == 3 and (name == "translation" or prompt.shape[1] == deploy_decode.PROMPT_TOKENS)


def test_the_onnx_language_model_gives_pytorchs_logits_at_every_position(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    model, _, _, onnx_folder = _built_generator("text_generation", tmp_path_factory)
    task = zoo.get_task("text_generation")
    spec, _ = FIXTURES["text_generation"].write(tmp_path_factory.mktemp("data"))
    batch = deploy.test_batch(task, model, task.datasets(spec, "all"), 4)       # blocks (4, 16)
    with torch.no_grad():
        expected = model(batch)["logits"]
    got = deploy_decode.ExportedGenerator(model, onnx_folder)(batch)["logits"]
    assert got.shape == expected.shape == (4, 16, model.head.proj.out_features)
    assert torch.allclose(got, expected, atol=1e-4)


def test_translation_rows_are_timed_by_decoding_and_scored_by_bleu(runs: Path, tmp_path: Path) -> None:
    spec, _ = FIXTURES["translation"].write(tmp_path)
    train_command(zoo.get_task("translation"), ["--data", spec, "--out", str(runs / "translation"),
                                                *FIXTURES["translation"].argv, *COMMON])
    status, rows = _suite(runs, tmp_path / "out", "--task", "translation", "--decode-tokens", "6",
                          "--variants", "fp32", "onnx", "onnx-int8", "int8")
    assert status == 0
    by = {r["variant"]: r for r in rows}
    for variant, row in by.items():
        assert not row.get("error"), row
        assert row["speed"].startswith("greedy decoding of 6 new tokens")
        assert 0.0 <= row["metric"] <= 100.0 and row["metric_name"] == "bleu"
        for label in ("batch1", "batched"):
            assert (row[label] is None) == (variant == "fp32")
            if row[label]:
                assert math.isfinite(row[label]["ratio"]) and row[label]["ratio"] > 0
    assert by["onnx"]["metric"] == pytest.approx(by["fp32"]["metric"], abs=1e-6)    # the same greedy texts
    table = next((tmp_path / "out").glob("deploy-*.md")).read_text()
    assert "| translation | onnx-int8 | " in table and "Speed of translation: greedy decoding" in table
