"""GPU-only checks, run by benchmarks/gpu.sh when a GPU is lent (skipped, and counted, everywhere else):
training on the device lowers the loss in bf16, decoding on the GPU gives the CPU's tokens, and the
benchmark's CUDA peak memory holds the optimizer state."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from tasks.engine import bench
from tasks.engine.task import Workload
from tests.test_sentiment_task import _reviews, _write_csv
from tests.test_text_generation_generate import OPTIONS, PROMPTS, batch, lm

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda")


def test_training_on_the_gpu_in_bf16_lowers_the_loss(tmp_path: Path) -> None:
    data = _write_csv(tmp_path / "reviews.csv", _reviews(400, seed=0))
    run = zoo.get_task("sentiment").command("train", [
        "--data", f"csv:{data}", "--vocab-size", "200", "--device", "cuda", "--precision", "bf16",
        "--batch-size", "32", "--max-steps", "60", "--eval-every", "0", "--out", str(tmp_path / "run"),
        "--no-progress", "--logger", "none"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["train_loss"] for r in rows[:5]) / 5
    last = sum(r["train_loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first and rows[-1]["val_accuracy"] > 0.6


def test_greedy_decoding_on_the_gpu_gives_the_cpus_tokens() -> None:
    model = lm()
    on_cpu = model.generate(batch(PROMPTS), **OPTIONS)
    model = model.to(CUDA)
    prompts = {k: v.to(CUDA) for k, v in batch(PROMPTS).items()}
    assert model.generate(prompts, **OPTIONS) == on_cpu
    assert model.generate(prompts, static_cache=True, **OPTIONS) == on_cpu


def test_cuda_peak_memory_holds_the_adamw_state() -> None:
    model = torch.nn.Linear(2048, 2048).to(CUDA)
    inputs = torch.randn(8, 2048, device=CUDA)
    step = bench.train_step(model, lambda: model(inputs).square().mean())
    warm = bench.warm_up(Workload("adamw", "items", 8, step, model, "train", 8), CUDA, "fp32", steps=3)
    weights = bench.parameter_bytes(model)
    assert warm.memory_kind == "cuda_max_allocated"
    assert warm.peak_memory_bytes >= 4 * weights   # weights + gradients + two AdamW moments
