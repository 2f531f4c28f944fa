"""``--strategy fsdp2``: sharded training with 2 gloo processes on the CPU, against one process.

A tiny real ZooModel (a 2-block causal text transformer with its tied LM head) learns
test_trainer's token sequences. One process with a global batch of 16 is the reference; two processes
with 8 each, sharded by FSDP2, must give the same losses and weights, resume a killed run
exactly (at 2 processes, and at 1 from the 2-process checkpoint), hold about half of the
parameters and optimizer state each, and leave a consolidated ``model.safetensors`` that
``zoo.load`` reads.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.distributed.tensor import DTensor

import zoo
from tasks.engine import distributed, trainer
from tasks.engine.checkpoints import SHARDED
from tasks.engine.evaluation import EvalOptions
from tasks.engine.task import Metric
from tasks.engine.trainer import build_optimizer, train
from tests.test_trainer import Crash, TextTask, make_args, rows
from zoo.errors import ZooError

VOCAB, LENGTH = 50, 8          # TextTask's token ids are below 50
BACKBONE_ARGS = {"vocab_size": VOCAB, "dim": 16, "depth": 2, "heads": 2}
STEPS = 4
FLAGS = ("--max-steps", STEPS, "--lr", 0.02, "--warmup-steps", 1, "--eval-every", 2, "--logger", "csv",
         "--layer-decay", 0.8, "--average-last", 2)   # lr groups by depth of the sharded blocks; averaged/ on rank 0


class LMTask(TextTask):
    """test_trainer's token sequences (its ``crash_at_batch`` kills a run while loading a batch), as
    next-token prediction with a tied LM head and no dropout; metric: validation nll."""

    name = "fsdp_lm"
    metric = Metric("nll", higher_is_better=False)

    def __init__(self, crash_at_batch: int | None = None) -> None:
        super().__init__()
        self.crash_at_batch = crash_at_batch     # every rank, before the step's collectives

    def make_collate(self, model: nn.Module, train: bool):
        collate = super().make_collate(model, train)

        def shifted(samples: list[dict]) -> dict:
            ids = collate(samples)["inputs"]     # (B, T)
            return {"inputs": ids[:, :-1], "targets": ids[:, 1:]}
        return shifted

    def build_model(self, args: argparse.Namespace, train_set) -> zoo.ZooModel:
        return zoo.create_model("text_decoder_tiny", "lm", backbone_args=BACKBONE_ARGS)

    def evaluate(self, model: nn.Module, dataset, options: EvalOptions) -> dict:
        batch = self.make_collate(model, train=False)(list(dataset))
        logits = model(batch)["logits"]          # (B, T - 1, VOCAB)
        return {"nll": F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten()).item()}


def _join(rank: int, world: int, init_file: str) -> None:
    torch.set_num_threads(1)        # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)


def _train_worker(rank: int, world: int, init_file: str, flags: tuple, crash_at_batch: int | None) -> None:
    _join(rank, world, init_file)
    try:
        task = LMTask(crash_at_batch)
        try:
            train(task, make_args(task, *flags))
        except Crash:
            pass
    finally:
        dist.destroy_process_group()


def train_two(tmp: Path, *flags, crash_at_batch: int | None = None) -> None:
    """Train with 2 gloo processes (forked: no re-import of torch in each child)."""
    init = tmp / f"init-{len(list(tmp.glob('init-*')))}"
    mp.start_processes(_train_worker, args=(2, str(init), ("--strategy", "fsdp2", *flags), crash_at_batch),
                       nprocs=2, start_method="fork")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One process (global batch 16), 2 sharded processes (8 each), and a 2-process run killed in step 3."""
    tmp = tmp_path_factory.mktemp("fsdp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "plot_curves", lambda run_dir, metric: Path(run_dir) / "curves.png")   # not drawn
        task = LMTask()
        train(task, make_args(task, "--batch-size", 16, *FLAGS, "--out", tmp / "one"))
        train_two(tmp, "--batch-size", 8, *FLAGS, "--out", tmp / "two")
        train_two(tmp, "--batch-size", 8, *FLAGS, "--out", tmp / "killed", crash_at_batch=3)
    return {"one": tmp / "one", "two": tmp / "two", "killed": tmp / "killed", "tmp": tmp}


def losses(run: Path) -> list[float]:
    return [row["train_loss"] for row in rows(run)]


@pytest.mark.slow      # its set-up trains the three runs the next tests read
def test_two_sharded_processes_follow_one_process(runs):
    one, two = losses(runs["one"]), losses(runs["two"])
    assert len(one) == len(two) == STEPS and one[-1] < one[0]            # it learns
    assert two == pytest.approx(one, abs=1e-5)
    assert [r["val_nll"] for r in rows(runs["two"]) if "val_nll" in r] == pytest.approx(
        [r["val_nll"] for r in rows(runs["one"]) if "val_nll" in r], abs=1e-5)
    assert (runs["two"] / "last" / SHARDED / ".metadata").is_file()
    assert not (runs["one"] / "last" / SHARDED).exists()                 # one process: the unsharded format


def test_consolidated_weights_load_with_zoo_load(runs):
    reference, sharded = zoo.load(runs["one"] / "last"), zoo.load(runs["two"] / "last")
    stored = load_file(str(runs["two"] / "last" / "model.safetensors"))
    assert "head.proj.weight" not in stored and "backbone.embed.weight" in stored   # the tied table once
    assert stored["backbone.embed.weight"].dtype == torch.float32
    for (name, mine), (_, theirs) in zip(sharded.state_dict().items(), reference.state_dict().items()):
        # Adam divides by the root of the squared gradient: where that is ~0, a 1e-9 difference of
        # summation order moves a weight by up to ~1e-5 per step, so weights get a looser bound
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0, msg=name)
    assert json.loads((runs["two"] / "last" / "config.json").read_text())["backbone"]["name"] == "text_decoder_tiny"


def test_the_averaged_model_of_a_sharded_run_is_the_mean_of_its_consolidated_checkpoints(runs):
    averaged = load_file(str(runs["two"] / "averaged" / "model.safetensors"))
    steps = [load_file(str(runs["two"] / f"step-{s}" / "model.safetensors")) for s in (2, STEPS)]
    for name, tensor in averaged.items():
        torch.testing.assert_close(tensor, (steps[0][name] + steps[1][name]) / 2, msg=name)
    torch.testing.assert_close(averaged, load_file(str(runs["one"] / "averaged" / "model.safetensors")),
                               atol=1e-4, rtol=0)
    zoo.load(runs["two"] / "averaged")


def test_resume_after_a_kill_equals_the_uninterrupted_run(runs):
    killed = runs["tmp"] / "killed-2"
    shutil.copytree(runs["killed"], killed, symlinks=True)
    assert [r["step"] for r in rows(killed)] == [1, 2]                  # killed in step 3, saved at step 2
    train_two(runs["tmp"], "--resume", killed)
    assert losses(killed) == pytest.approx(losses(runs["two"]), abs=1e-6)
    resumed, uninterrupted = zoo.load(killed / "last"), zoo.load(runs["two"] / "last")
    for (name, mine), (_, theirs) in zip(resumed.state_dict().items(), uninterrupted.state_dict().items()):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0, msg=name)


def test_resume_in_one_process_from_a_two_process_checkpoint(runs, monkeypatch):
    monkeypatch.setattr(trainer, "plot_curves", lambda run_dir, metric: Path(run_dir) / "curves.png")
    killed = runs["tmp"] / "killed-1"
    shutil.copytree(runs["killed"], killed, symlinks=True)
    task = LMTask()
    train(task, make_args(task, "--resume", killed, "--batch-size", 16))   # the same global batch
    assert losses(killed) == pytest.approx(losses(runs["one"]), abs=1e-5)
    assert (killed / "last" / "model.safetensors").is_file() and not (killed / "last" / SHARDED).exists()


def _memory_worker(rank: int, world: int, init_file: str, out: str) -> None:
    _join(rank, world, init_file)
    try:
        model = LMTask().build_model(argparse.Namespace(), None)
        full = sum(p.numel() for p in model.parameters())
        sharded = distributed.shard_model(model, torch.device("cpu"))
        optimizer = build_optimizer(sharded, 0.01, 0.01, torch.device("cpu"))
        ids = torch.arange(2 * (LENGTH + 1)).reshape(2, LENGTH + 1) % VOCAB
        batch = {"inputs": ids[:, :-1], "targets": ids[:, 1:]}
        sharded.loss(sharded(batch), batch)["loss"].backward()
        optimizer.step()
        local = sum(p.to_local().numel() for p in sharded.parameters())
        moments = sum(t.to_local().numel() for slots in optimizer.state.values() for t in slots.values()
                      if isinstance(t, DTensor))
        blocks = sum(isinstance(m, distributed.FSDPModule) for m in sharded.modules())
        Path(out, f"rank{rank}.json").write_text(json.dumps(
            {"full": full, "local": local, "moments": moments, "units": blocks}))
    finally:
        dist.destroy_process_group()


def test_each_rank_holds_half_of_the_parameters_and_optimizer_state(tmp_path):
    mp.start_processes(_memory_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       start_method="fork")
    counts = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    full = counts[0]["full"]
    assert sum(c["local"] for c in counts) == full                       # the shards cover it once
    for c in counts:
        assert abs(c["local"] - full / 2) <= 0.05 * full                 # each about 1/N
        assert c["moments"] == 2 * c["local"]                            # AdamW's two moments of its shard
        assert c["units"] == 3                                           # two blocks and the root


def _seq2seq_worker(rank: int, world: int, init_file: str, out: str) -> None:
    _join(rank, world, init_file)
    try:
        torch.manual_seed(0)
        plain = zoo.create_model("text_encoder_tiny", "seq2seq", backbone_args=BACKBONE_ARGS, vocab_size=VOCAB,
                                 depth=2, heads=2)
        sharded = distributed.shard_model(copy.deepcopy(plain), torch.device("cpu"))
        ids = torch.arange(3 * LENGTH).reshape(3, LENGTH) % VOCAB
        batch = {"inputs": ids, "mask": torch.ones_like(ids, dtype=torch.bool), "targets": ids.flip(1),
                 "target_mask": torch.ones_like(ids, dtype=torch.bool)}
        losses = [model.loss(model(batch), batch)["loss"] for model in (plain, sharded)]
        for loss in losses:
            loss.backward()
        full_grads = {name: p.grad.full_tensor() for name, p in sharded.named_parameters()}
        generated = sharded.eval().generate(batch, max_new_tokens=4)   # it calls the decoder's parts directly
        result = {"losses": [loss.item() for loss in losses],
                  "grad_error": max((full_grads[name] - p.grad).abs().max().item() for name, p in plain.named_parameters()),
                  "generated": generated, "expected": plain.eval().generate(batch, max_new_tokens=4),
                  "units": sum(isinstance(m, distributed.FSDPModule) for m in sharded.modules())}
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_a_sharded_decoder_with_cross_attention_trains_and_generates_like_the_plain_one(tmp_path):
    mp.start_processes(_seq2seq_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       start_method="fork")
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        plain, sharded = result["losses"]
        assert sharded == pytest.approx(plain, abs=1e-6)
        assert result["grad_error"] < 1e-6
        assert result["generated"] == result["expected"]
        assert result["units"] == 2 * 2 + 2 + 1        # encoder blocks; decoder blocks and their cross-attention; root


def test_mixed_precision_policy_is_bf16_on_gpus_only():
    gpu, cpu = distributed.precision_policy(torch.device("cuda", 0)), distributed.precision_policy(torch.device("cpu"))
    assert gpu.param_dtype == torch.bfloat16 and gpu.reduce_dtype == torch.float32
    assert cpu.param_dtype is None and cpu.reduce_dtype is None         # fp32 throughout


def test_one_process_trains_unsharded_with_either_strategy():
    model = nn.Linear(2, 2)
    ctx = distributed.Dist(0, 1, torch.device("cpu"))
    assert ctx.wrap(model, "fsdp2") is model and not distributed.is_sharded(model)
    with pytest.raises(ValueError, match="strategy 'zero3'"):
        ctx.wrap(model, "zero3")


@pytest.mark.parametrize("flag", [("--ema", 0.9), ("--lora", 2)])
def test_fsdp2_refuses_flags_that_need_whole_weights(flag):
    task = LMTask()
    with pytest.raises(ZooError, match=rf"^{flag[0]} does not work with --strategy fsdp2 \(.*\); "
                                       rf"drop {flag[0]} or train with --strategy ddp$"):
        distributed.check_strategy(make_args(task, "--strategy", "fsdp2", *flag))
    distributed.check_strategy(make_args(task, *flag))                  # ddp keeps them
