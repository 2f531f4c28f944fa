"""The training engine on a toy task: resume exactness, crash safety, NaN skipping, DDP, schedule, run folder.

The toy model implements the ZooModel surface the trainer uses (forward, loss, save,
load_backbone_from, ``backbone``); ``zoo.load`` is pointed at its loader while resuming.
It has dropout and its training collate adds noise, so resuming must restore RNG streams.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, load_model, save_model
from torch import nn

import zoo
from zoo import progress
from zoo.errors import ZooError
from zoo.model import LoadReport
from zoo.tokenizer import pad_ids
from tasks.engine import checkpoints, trainer
from tasks.engine.checkpoints import load_trainer_state, resolve_checkpoint
from tasks.engine.curves import plot_curves
from tasks.engine.evaluation import EvalOptions
from tasks.engine.task import Metric, Task
from tasks.engine.trainer import EMA, add_train_arguments, lr_at, train
from tests.test_progress import FakeTerminal


class Crash(Exception):
    """Stands for the process being killed."""


class ToyModel(nn.Module):
    """A two-layer classifier of 4-d points; ``backbone`` + ``head`` like a ZooModel."""

    def __init__(self, hidden: int = 8, dropout: float = 0.1, noise: float = 0.05, batchnorm: bool = False) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "dropout": dropout, "noise": noise,   # noise: training augmentation
                       "batchnorm": batchnorm}
        norm = [nn.BatchNorm1d(hidden)] if batchnorm else []
        self.backbone = nn.Sequential(nn.Linear(4, hidden), *norm, nn.Tanh(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, 3)
        self.crash_at: int | None = None        # training forward call that raises Crash
        self.nan_at: set[int] = set()           # loss calls that return NaN
        self.fail_save_step: int | None = None  # save() of this step dies after config.json
        self.forwards = self.losses = 0

    def forward(self, batch: dict) -> dict:
        if self.training:
            self.forwards += 1
            if self.forwards == self.crash_at:
                raise Crash(f"killed at forward {self.forwards}")
        return {"logits": self.head(self.backbone(batch["inputs"]))}   # (B, 3)

    def loss(self, outputs: dict, batch: dict) -> dict:
        self.losses += 1
        ce = F.cross_entropy(outputs["logits"], batch["labels"])
        total = ce * float("nan") if self.losses in self.nan_at else ce
        return {"loss": total, "ce": ce.detach()}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        (directory / "config.json").write_text(json.dumps(self.config))
        if self.fail_save_step is not None and directory.name.endswith(f"step-{self.fail_save_step}"):
            raise Crash(f"killed while saving {directory}")
        save_model(self, str(directory / "model.safetensors"))

    def load_backbone_from(self, directory: Path) -> LoadReport:
        state = load_file(str(Path(directory) / "model.safetensors"))
        mine = self.state_dict()
        loaded = [k for k in state if k.startswith("backbone.") and state[k].shape == mine[k].shape]
        self.load_state_dict({k: state[k] for k in loaded}, strict=False)
        return LoadReport(loaded=loaded, skipped=[k for k in state if k not in loaded])


def load_toy(directory: Path) -> ToyModel:
    """What ``zoo.load`` does for a ZooModel, for the toy."""
    model = ToyModel(**json.loads((Path(directory) / "config.json").read_text()))
    load_model(model, str(Path(directory) / "model.safetensors"))
    return model


class ToyTask(Task):
    """Three Gaussian blobs in 4-d; accuracy is the primary metric."""

    name = "toy"
    metric = Metric("accuracy", higher_is_better=True)

    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(123)
        centers = torch.randn(3, 4, generator=g) * 2
        labels = torch.arange(n) % 3
        points = centers[labels] + torch.randn(n, 4, generator=g)
        self.samples = [{"x": points[i], "y": int(labels[i])} for i in range(n)]
        self.faults: dict = {}
        self.batchnorm = False

    def datasets(self, spec: str, split: str) -> list[dict]:
        return self.samples if split == "train" else self.samples[:12]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--hidden", type=int, default=8)
        parser.add_argument("--dropout", type=float, default=0.1)
        parser.add_argument("--noise", type=float, default=0.05)

    def make_collate(self, model: nn.Module, train: bool):
        noise = model.config["noise"] if train else 0.0

        def collate(samples: list[dict]) -> dict:
            x = torch.stack([s["x"] for s in samples])
            return {"inputs": x + noise * torch.randn_like(x), "labels": torch.tensor([s["y"] for s in samples])}
        return collate

    def build_model(self, args: argparse.Namespace, train_set) -> ToyModel:
        model = ToyModel(args.hidden, args.dropout, args.noise, self.batchnorm)
        for key, value in self.faults.items():
            setattr(model, key, value)
        return model

    def evaluate(self, model: nn.Module, dataset, options: EvalOptions) -> dict:
        batch = self.make_collate(model, train=False)(list(dataset))
        logits = model(batch)["logits"]
        return {"accuracy": (logits.argmax(-1) == batch["labels"]).float().mean().item(),
                "loss": F.cross_entropy(logits, batch["labels"]).item(), "n": len(dataset)}


def make_args(task: Task, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    task.add_arguments(parser)
    return parser.parse_args(["--no-progress", "--device", "cpu", *map(str, flags)])


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """Drawing a PNG costs ~0.5 s of CPU; only the run-folder test puts the real drawing back."""
    monkeypatch.setattr(trainer, "plot_curves", lambda run_dir, metric: Path(run_dir) / "curves.png")   # not drawn


@pytest.fixture
def toy_loader(monkeypatch):
    """Resuming rebuilds the model with ``zoo.load``; for the toy that is ``load_toy``."""
    monkeypatch.setattr(zoo, "load", load_toy)


COMMON = ("--batch-size", 8, "--lr", 0.05, "--warmup-steps", 2, "--max-steps", 12, "--eval-every", 6, "--ema", 0.9,
          "--workers", 1)   # collate (with random noise) runs in a worker process


def test_resume_after_interruption_repeats_the_same_losses(tmp_path, toy_loader):
    task = ToyTask()
    train(task, make_args(task, *COMMON, "--out", tmp_path / "a"))

    task.faults = {"crash_at": 8}            # dies during step 8, after step 6 was saved
    with pytest.raises(Crash):
        train(task, make_args(task, *COMMON, "--out", tmp_path / "b"))
    assert resolve_checkpoint(tmp_path / "b", "last").name == "step-6"
    task.faults = {}
    train(task, make_args(task, "--resume", tmp_path / "b"))   # every other flag comes from args.json

    a, b = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert [r["step"] for r in b] == list(range(1, 13))
    for key in ("train_loss", "lr", "grad_norm", "val_accuracy", "val_loss", "epoch"):
        assert [r.get(key) for r in a] == [r.get(key) for r in b], key
    final_a, final_b = (load_file(str(run / "last" / "model.safetensors")) for run in (tmp_path / "a", tmp_path / "b"))
    assert final_a.keys() == final_b.keys() and all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    state_a, _ = load_trainer_state(tmp_path / "a" / "last")
    state_b, _ = load_trainer_state(tmp_path / "b" / "last")
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a if not k.startswith("rng"))


def test_resume_extends_a_finished_run(tmp_path, toy_loader):
    task = ToyTask()
    flags = ("--batch-size", 8, "--warmup-steps", 0, "--out", tmp_path / "run")
    train(task, make_args(task, *flags, "--max-steps", 4))
    train(task, make_args(task, "--resume", tmp_path / "run", "--max-steps", 7))
    assert [r["step"] for r in rows(tmp_path / "run")] == list(range(1, 8))
    tensors, info = load_trainer_state(tmp_path / "run" / "last")
    assert info["state"]["step"] == 7 and tensors["optim.0.step"].item() == 7
    assert json.loads((tmp_path / "run" / "args.json").read_text())["max_steps"] == 7


def test_checkpoint_killed_midway_keeps_previous(tmp_path, toy_loader):
    task = ToyTask()
    task.faults = {"fail_save_step": 12}
    run = tmp_path / "run"
    with pytest.raises(Crash):
        train(task, make_args(task, "--batch-size", 8, "--max-steps", 12, "--checkpoint-every", 6, "--out", run))
    last = resolve_checkpoint(run, "last")
    assert last == (run / "step-6").resolve() and resolve_checkpoint(run) == last   # no 'best' yet: falls back
    assert not (run / "step-12").exists()
    model = load_toy(last)
    _, info = load_trainer_state(last)
    assert info["state"]["step"] == 6 and isinstance(model, ToyModel)
    task.faults = {}
    train(task, make_args(task, "--resume", run))
    assert resolve_checkpoint(run, "last").name == "step-12"
    assert not list(run.glob(".tmp-*"))                           # the half-written folder is cleaned up


def test_nan_step_is_skipped_and_counted(tmp_path, capsys):
    task = ToyTask()
    task.faults = {"nan_at": {3}}
    run = tmp_path / "run"
    train(task, make_args(task, "--batch-size", 8, "--max-steps", 6, "--out", run))
    log = rows(run)
    assert log[2]["train_loss"] is None and log[2]["grad_norm"] is None
    assert [r["skipped"] for r in log] == [0, 0, 1, 1, 1, 1]
    assert all(math.isfinite(r["train_loss"]) for i, r in enumerate(log) if i != 2)
    tensors, _ = load_trainer_state(run / "last")
    assert tensors["optim.0.step"].item() == 5                    # five real optimizer steps
    assert "1 non-finite steps skipped" in capsys.readouterr().out


def test_too_many_nan_steps_abort_after_saving(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "MAX_BAD_STEPS", 3)
    task = ToyTask()
    task.faults = {"nan_at": {3, 4, 5}}
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="3 steps in a row"):
        train(task, make_args(task, "--batch-size", 8, "--max-steps", 20, "--out", run))
    tensors, info = load_trainer_state(resolve_checkpoint(run, "last"))
    assert info["state"]["step"] == 5 and info["state"]["skipped"] == 3 and tensors["optim.0.step"].item() == 2


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)        # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        task = ToyTask()
        train(task, make_args(task, "--batch-size", 8, *DDP_FLAGS, "--out", out))
    finally:
        dist.destroy_process_group()


DDP_FLAGS = ("--max-steps", 1, "--lr", 0.1, "--warmup-steps", 0, "--dropout", 0, "--noise", 0)


def test_ddp_two_processes_match_one_process(tmp_path):
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp")), nprocs=2,
                       start_method="fork")   # fork: no re-import of torch in each child (seconds on 2 cores)
    task = ToyTask()
    train(task, make_args(task, "--batch-size", 16, *DDP_FLAGS, "--out", tmp_path / "one"))
    torch.manual_seed(0)
    initial = ToyModel(dropout=0).state_dict()
    one = load_file(str(tmp_path / "one" / "last" / "model.safetensors"))
    ddp = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors"))
    for key in one:
        assert not torch.allclose(one[key], initial[key]), key          # the step did happen
        torch.testing.assert_close(ddp[key], one[key], atol=1e-6, rtol=0)
    assert rows(tmp_path / "ddp")[0]["train_loss"] == pytest.approx(rows(tmp_path / "one")[0]["train_loss"], abs=1e-6)


def test_lr_schedule_values():
    assert lr_at(0, 1.0, 4, 0.0) == pytest.approx(0.25)
    assert lr_at(3, 1.0, 4, 0.0) == pytest.approx(1.0)
    assert lr_at(4, 1.0, 4, 0.0) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 4, 0.5) == pytest.approx(0.55)
    assert lr_at(10, 1.0, 4, 1.0) == pytest.approx(0.1)
    assert lr_at(10, 1.0, 4, 3.0) == pytest.approx(0.1)           # past the plan: stays at the floor
    assert lr_at(0, 2e-3, 0, 0.0) == pytest.approx(2e-3)


def test_run_folder_contents_and_logged_schedule(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "plot_curves", plot_curves)
    task = ToyTask()
    run, started = tmp_path / "run", time.perf_counter()
    out = train(task, make_args(task, "--batch-size", 8, "--lr", 0.01, "--warmup-steps", 3, "--max-steps", 9,
                                "--eval-every", 3, "--checkpoint-every", 2, "--precision", "bf16", "--out", run))
    assert out == run
    assert json.loads((run / "args.json").read_text())["max_steps"] == 9
    log = rows(run)
    assert [r["step"] for r in log] == list(range(1, 10))
    expected = [lr_at(s, 0.01, 3, (s - 3) / 6) for s in range(9)]
    assert [r["lr"] for r in log] == pytest.approx(expected)
    assert all(math.isfinite(r["train_loss"]) and r["items_per_s"] > 0 for r in log)
    elapsed = [r["elapsed"] for r in log]
    assert elapsed == sorted(elapsed) and elapsed[-1] <= time.perf_counter() - started
    assert [r["step"] for r in log if "val_accuracy" in r] == [3, 6, 9]
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "best").is_symlink() and (run / "last").is_symlink()
    assert resolve_checkpoint(run, "last") == (run / "step-9").resolve()
    best = resolve_checkpoint(run)
    assert (best / "config.json").is_file() and (best / "model.safetensors").is_file()
    assert resolve_checkpoint(best) == best
    steps = {p.name for p in run.glob("step-*")}
    assert steps <= {"step-8", "step-9", best.name} and {"step-8", "step-9"} <= steps


def test_freeze_and_init_backbone(tmp_path):
    task = ToyTask()
    train(task, make_args(task, "--batch-size", 8, "--max-steps", 3, "--out", tmp_path / "src"))
    source = load_toy(resolve_checkpoint(tmp_path / "src"))
    train(task, make_args(task, "--batch-size", 8, "--max-steps", 3, "--freeze-backbone", "--seed", 5,
                          "--init-backbone", tmp_path / "src", "--out", tmp_path / "dst"))
    result = load_toy(resolve_checkpoint(tmp_path / "dst"))
    for key, value in source.state_dict().items():
        same = torch.equal(value, result.state_dict()[key])
        assert same == key.startswith("backbone."), key          # backbone copied and frozen, head trained


def test_patience_and_time_budget_stop_cleanly(tmp_path, capsys):
    task = ToyTask()
    train(task, make_args(task, "--batch-size", 8, "--lr", 1e-12, "--eval-every", 1, "--patience", 2,
                          "--max-steps", 50, "--out", tmp_path / "patience"))
    assert len(rows(tmp_path / "patience")) == 3                  # lr ~0: nothing improves after step 1
    train(task, make_args(task, "--batch-size", 8, "--time-budget", 0.5, "--out", tmp_path / "budget"))
    log = rows(tmp_path / "budget")
    assert log[-1]["elapsed"] >= 0.5 and "val_accuracy" in log[-1]
    assert resolve_checkpoint(tmp_path / "budget", "last").name == f"step-{log[-1]['step']}"
    assert "time budget reached" in capsys.readouterr().out


class TextTask(Task):
    """Token sequences classified by their first token mod 3, with a real ZooModel (zoo.create_model)."""

    name = "toy_text"
    metric = Metric("accuracy", higher_is_better=True)

    def __init__(self) -> None:
        ids = torch.randint(1, 50, (32, 6), generator=torch.Generator().manual_seed(7))   # (N, T)
        self.samples = [{"ids": ids[i], "y": int(ids[i, 0]) % 3} for i in range(len(ids))]
        self.crash_at_batch: int | None = None
        self.batches = 0

    def datasets(self, spec: str, split: str) -> list[dict]:
        return self.samples if split == "train" else self.samples[:8]

    def make_collate(self, model: nn.Module, train: bool):
        def collate(samples: list[dict]) -> dict:
            if train:
                self.batches += 1
                if self.batches == self.crash_at_batch:
                    raise Crash(f"killed while loading batch {self.batches}")
            ids = torch.stack([s["ids"] for s in samples])                  # (B, T)
            return {"inputs": ids, "mask": torch.ones_like(ids, dtype=torch.bool),
                    "labels": torch.tensor([s["y"] for s in samples])}
        return collate

    def build_model(self, args: argparse.Namespace, train_set) -> nn.Module:
        return zoo.create_model("text_encoder_tiny", "classification", num_classes=3, dropout=0.2,
                                backbone_args=dict(vocab_size=50, dim=32, depth=1, heads=2, dropout=0.1))

    def evaluate(self, model: nn.Module, dataset, options: EvalOptions) -> dict:
        batch = self.make_collate(model, train=False)(list(dataset))
        accuracy = (model(batch)["logits"].argmax(-1) == batch["labels"]).float().mean().item()
        return {"accuracy": accuracy}


def crash_and_resume(tmp_path: Path, *flags: object) -> Path:
    """Train run ``a`` straight through and run ``b`` crashed at batch 6 then resumed, with the same flags;
    assert both logged the same losses and ended with the same weights. Returns run ``b``."""
    task = TextTask()
    train(task, make_args(task, *flags, "--out", tmp_path / "a"))
    task = TextTask()
    task.crash_at_batch = 6
    with pytest.raises(Crash):
        train(task, make_args(task, *flags, "--out", tmp_path / "b"))
    task.crash_at_batch = None
    train(task, make_args(task, "--resume", tmp_path / "b"))
    assert [r["train_loss"] for r in rows(tmp_path / "a")] == [r["train_loss"] for r in rows(tmp_path / "b")]
    a, b = (zoo.load(tmp_path / run / "last").state_dict() for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    return tmp_path / "b"


def test_resume_of_a_real_zoo_model(tmp_path):
    crash_and_resume(tmp_path, "--batch-size", 8, "--max-steps", 8, "--checkpoint-every", 4, "--warmup-steps", 2)


def test_accumulation_matches_one_big_batch(tmp_path):
    task = ToyTask()
    train(task, make_args(task, "--batch-size", 16, *DDP_FLAGS, "--out", tmp_path / "big"))
    train(task, make_args(task, "--batch-size", 8, "--accumulate", 2, *DDP_FLAGS, "--out", tmp_path / "acc"))
    big = load_file(str(tmp_path / "big" / "last" / "model.safetensors"))
    acc = load_file(str(tmp_path / "acc" / "last" / "model.safetensors"))
    for key in big:
        torch.testing.assert_close(acc[key], big[key], atol=1e-6, rtol=0)


def test_ema_averages_batchnorm_statistics_and_copies_counters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    ema = EMA(model, decay=0.5)
    expected = {"mean": model[1].running_mean.clone(), "weight": model[0].weight.detach().clone()}
    for step in range(3):
        model(torch.randn(8, 4) * (step + 1) + step)            # moves the running statistics
        with torch.no_grad():
            model[0].weight.add_(0.1 * (step + 1))
        ema.update(step)
        decay = min(0.5, (1 + step) / (10 + step))
        expected["mean"] = decay * expected["mean"] + (1 - decay) * model[1].running_mean
        expected["weight"] = decay * expected["weight"] + (1 - decay) * model[0].weight.detach()
    raw_mean, raw_weight = model[1].running_mean.clone(), model[0].weight.detach().clone()
    with ema.applied():
        torch.testing.assert_close(model[1].running_mean, expected["mean"])
        torch.testing.assert_close(model[0].weight, expected["weight"])
        assert model[1].num_batches_tracked.item() == 3          # integer buffers are copied, not averaged
        assert not torch.allclose(model[1].running_mean, raw_mean)
    assert torch.equal(model[1].running_mean, raw_mean) and torch.equal(model[0].weight, raw_weight)


def test_ema_with_batchnorm_saves_averaged_statistics_and_resumes_exactly(tmp_path, toy_loader):
    task = ToyTask()
    task.batchnorm = True
    train(task, make_args(task, *COMMON, "--out", tmp_path / "a"))
    task.faults = {"crash_at": 8}
    with pytest.raises(Crash):
        train(task, make_args(task, *COMMON, "--out", tmp_path / "b"))
    task.faults = {}
    train(task, make_args(task, "--resume", tmp_path / "b"))
    assert [r["train_loss"] for r in rows(tmp_path / "a")] == [r["train_loss"] for r in rows(tmp_path / "b")]
    saved = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    raw, _ = load_trainer_state(tmp_path / "b" / "last")
    assert not torch.allclose(saved["backbone.1.running_mean"], raw["model.backbone.1.running_mean"])
    assert raw["model.backbone.1.num_batches_tracked"].item() == 12 == saved["backbone.1.num_batches_tracked"].item()
    final_a = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    assert all(torch.equal(final_a[k], saved[k]) for k in final_a)


class LMTask(Task):
    """Next-token prediction on four right-padded sequences of very different lengths."""

    name = "toy_lm"
    metric = Metric("loss", higher_is_better=False)

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(3)
        # 1, 2, 4 and 16 predicted tokens: every split into two pairs has unequal token counts
        self.samples = [torch.randint(4, 30, (n,), generator=g) for n in (2, 3, 5, 17)]

    def datasets(self, spec: str, split: str) -> list:
        return self.samples

    def make_collate(self, model: nn.Module, train: bool):
        def collate(samples: list[torch.Tensor]) -> dict:
            ids, mask = pad_ids([s.tolist() for s in samples])          # (B, T) right-padded
            return {"inputs": ids, "mask": mask}
        return collate

    def build_model(self, args: argparse.Namespace, train_set) -> nn.Module:
        return zoo.create_model("text_decoder_tiny", "lm", backbone_args=dict(vocab_size=30, dim=16, depth=1, heads=2))

    def evaluate(self, model: nn.Module, dataset, options: EvalOptions) -> dict:
        batch = self.make_collate(model, train=False)(list(dataset))
        return {"loss": model.loss(model(batch), batch)["loss"].item()}


def test_accumulation_is_token_weighted_like_one_big_batch(tmp_path):
    """Two micro-batches with different token counts: the logged loss, the gradient norm and the
    update equal those of one batch of all four sequences (the LM loss is a mean over tokens)."""
    task = LMTask()
    flags = ("--max-steps", 1, "--lr", 0.01, "--warmup-steps", 0, "--grad-clip", 0)
    train(task, make_args(task, "--batch-size", 4, *flags, "--out", tmp_path / "big"))
    train(task, make_args(task, "--batch-size", 2, "--accumulate", 2, *flags, "--out", tmp_path / "acc"))
    big, acc = rows(tmp_path / "big")[0], rows(tmp_path / "acc")[0]
    assert acc["train_loss"] == pytest.approx(big["train_loss"], rel=1e-5)
    assert acc["grad_norm"] == pytest.approx(big["grad_norm"], rel=1e-5)
    assert "train_weight" not in acc
    big_state, acc_state = (zoo.load(tmp_path / run / "last").state_dict() for run in ("big", "acc"))
    for key in big_state:
        torch.testing.assert_close(acc_state[key], big_state[key], atol=1e-6, rtol=0)


def test_kill_between_rename_and_first_pointer_still_resumes(tmp_path, toy_loader, monkeypatch):
    """Killed after ``step-6`` was renamed into place but before ``last`` pointed at it: the run
    resumes from that complete folder, and a plain re-run says to use --resume."""
    task = ToyTask()
    flags = ("--batch-size", 8, "--max-steps", 12, "--checkpoint-every", 6, "--dropout", 0, "--workers", 0)
    train(task, make_args(task, *flags, "--out", tmp_path / "a"))
    point = checkpoints._point

    def killed(run_dir: Path, name: str, target: str) -> None:
        raise Crash(f"killed before pointing {name} at {target}")

    monkeypatch.setattr(checkpoints, "_point", killed)
    run = tmp_path / "b"
    with pytest.raises(Crash):
        train(task, make_args(task, *flags, "--out", run))
    monkeypatch.setattr(checkpoints, "_point", point)
    assert (run / "step-6" / "model.safetensors").is_file() and not (run / "last").exists()
    assert resolve_checkpoint(run, "last") == (run / "step-6").resolve()
    with pytest.raises(FileExistsError, match=f"pass --resume {run}"):
        train(task, make_args(task, *flags, "--out", run))
    train(task, make_args(task, "--resume", run))
    assert resolve_checkpoint(run, "last").name == "step-12"
    assert [r["train_loss"] for r in rows(tmp_path / "a")] == [r["train_loss"] for r in rows(run)]


def test_disk_full_during_a_save_is_one_line_and_keeps_the_last_checkpoint(tmp_path, toy_loader, monkeypatch):
    save = ToyModel.save

    def disk_full(model: ToyModel, directory: Path) -> None:
        if Path(directory).name.endswith("step-12"):
            (Path(directory) / "config.json").write_text("{}")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(directory) / "model.safetensors"))
        save(model, directory)

    monkeypatch.setattr(ToyModel, "save", disk_full)
    task, run = ToyTask(), tmp_path / "run"
    with pytest.raises(ZooError) as caught:
        train(task, make_args(task, "--batch-size", 8, "--max-steps", 12, "--checkpoint-every", 6, "--out", run))
    message = str(caught.value)
    assert message == (f"cannot write checkpoint to {run / 'step-12'}: No space left on device; free space or "
                       f"pass another --out (the previous checkpoint is intact)")
    last = resolve_checkpoint(run, "last")
    assert last.name == "step-6" and isinstance(load_toy(last), ToyModel)
    assert load_trainer_state(last)[1]["state"]["step"] == 6 and not list(run.glob(".tmp-*"))


class RecordingScaler(torch.amp.GradScaler):
    """A CPU GradScaler that records which of its calls the trainer makes, in order."""

    def __init__(self) -> None:
        super().__init__("cpu", init_scale=2.0 ** 10)
        self.calls: list[str] = []

    def scale(self, outputs):
        self.calls.append("scale")
        return super().scale(outputs)

    def unscale_(self, optimizer):
        self.calls.append("unscale_")
        return super().unscale_(optimizer)

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.calls.append("update")
        return super().update(new_scale)


@pytest.mark.parametrize("precision, device, scaled", [("fp16", "cuda", True), ("fp16", "cpu", False),
                                                       ("bf16", "cuda", False), ("fp32", "cuda", False)])
def test_a_grad_scaler_exists_exactly_for_fp16_on_cuda(monkeypatch, precision, device, scaled):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)      # GradScaler("cuda") checks it
    scaler = trainer.grad_scaler(precision, torch.device(device))
    assert (scaler is not None) == scaled
    if scaled:
        assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled() and scaler.get_scale() == 2.0 ** 16


def test_the_scaler_scales_unscales_steps_and_updates_every_step_and_changes_nothing_else(tmp_path, monkeypatch):
    task = ToyTask()
    flags = ("--batch-size", 8, "--lr", 0.05, "--max-steps", 3, "--grad-clip", 0.5)
    train(task, make_args(task, *flags, "--out", tmp_path / "plain"))
    scaler, asked = RecordingScaler(), []
    monkeypatch.setattr(trainer, "grad_scaler", lambda precision, device: asked.append((precision, device)) or scaler)
    train(task, make_args(task, *flags, "--out", tmp_path / "scaled"))
    assert asked == [("fp32", torch.device("cpu"))]
    assert scaler.calls == ["scale", "unscale_", "step", "update"] * 3
    # a power-of-two scale is undone exactly: the same norms, clipping and weights as without a scaler
    for key in ("train_loss", "grad_norm"):
        assert [r[key] for r in rows(tmp_path / "scaled")] == [r[key] for r in rows(tmp_path / "plain")]
    plain, scaled = (load_file(str(tmp_path / run / "last" / "model.safetensors")) for run in ("plain", "scaled"))
    assert all(torch.equal(plain[key], scaled[key]) for key in plain)
    _, info = load_trainer_state(resolve_checkpoint(tmp_path / "scaled", "last"))
    assert info["scaler"]["scale"] == 2.0 ** 10


def test_an_overflowing_scaled_step_is_skipped_and_lowers_the_scale(tmp_path, monkeypatch):
    class OverflowingOnce(RecordingScaler):
        def scale(self, outputs):       # the first scaled loss overflows (as fp16 does at too high a scale)
            return super().scale(outputs) * (float("inf") if len(self.calls) == 1 else 1.0)

    task, scaler = ToyTask(), OverflowingOnce()
    monkeypatch.setattr(trainer, "grad_scaler", lambda precision, device: scaler)
    train(task, make_args(task, "--batch-size", 8, "--max-steps", 2, "--out", tmp_path / "run"))
    log = rows(tmp_path / "run")
    assert log[0]["skipped"] == 1 and log[0]["grad_norm"] is None
    assert log[1]["skipped"] == 1 and log[1]["grad_norm"] is not None      # counted in total, the second step ran
    assert scaler.calls == ["scale", "unscale_", "update", "scale", "unscale_", "step", "update"]
    assert scaler.get_scale() == 2.0 ** 9          # halved once, by the overflow


def test_the_training_bar_counts_seconds_of_a_time_budget_or_planned_steps(tmp_path, monkeypatch):
    bars = []

    def recording_bar(*args, **kwargs):
        bars.append((kwargs, trainer.progress_bar.__wrapped__(*args, **kwargs)))
        return bars[-1][1]

    recording_bar.__wrapped__ = trainer.progress_bar
    monkeypatch.setattr(trainer, "progress_bar", recording_bar)
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    task = ToyTask()
    for out, flags in (("budget", ("--time-budget", 1.0)), ("steps", ("--max-steps", 4))):
        args = make_args(task, "--batch-size", 8, *flags, "--out", tmp_path / out)
        args.no_progress = False
        train(task, args)
    (budget, budget_bar), (steps, steps_bar) = bars
    assert (budget["total"], budget["unit"], budget["enabled"]) == (1.0, "s", True)
    assert budget_bar.n == 1.0 and rows(tmp_path / "budget")[-1]["elapsed"] >= 1.0   # full when the budget ran out
    assert "| 1/1 s [" in sys.stderr.getvalue().replace("\r", "\n")     # seconds of the budget, not steps
    assert (steps["total"], steps["unit"], steps_bar.n) == (4, "step", 4)


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_fp16_is_refused_without_cuda_and_accepted_with_it(monkeypatch, device):
    from tasks.engine.commands import check_train_args, train_args

    sentiment = zoo.get_task("sentiment")
    args = train_args(sentiment, ["--precision", "fp16", "--device", device])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ZooError, match=r"^--precision fp16 trains on a CUDA device only .* use --precision bf16"):
        check_train_args(sentiment, args)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    if device == "auto":
        check_train_args(sentiment, args)           # auto picks the GPU: fp16 is fine
    else:
        with pytest.raises(ZooError, match="--precision fp16"):
            check_train_args(sentiment, args)
    for precision in ("fp32", "bf16"):
        check_train_args(sentiment, train_args(sentiment, ["--precision", precision, "--device", device]))
