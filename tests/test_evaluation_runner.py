"""The one evaluation loop (``tasks.engine.evaluation.run_batches``) and the options every task reads.

The runner puts the model in eval mode without gradients while it runs and gives the previous mode
back, autocasts to bf16 only when asked, runs the batches in the order given on the model's device;
``EvalOptions.from_args`` reads parsed flags; the trainer hands the run folder to ``evaluate``
through the options and leaves ``args.out`` as the user gave it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tasks.engine import trainer
from tasks.engine.evaluation import EvalOptions, run_batches, to_device
from tasks.engine.trainer import train
from tests.test_trainer import ToyTask, make_args

DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])


def _run(model: nn.Module, keys: list, options: EvalOptions = EvalOptions(), step=None) -> list:
    """Everything ``run_batches`` yields, each batch ``{"inputs": (len(key), 4) ones}``."""
    step = step or (lambda batch: model(batch["inputs"]))
    return list(run_batches(model, keys, lambda key: {"inputs": torch.ones(len(key), 4)}, step, options))


@pytest.mark.parametrize("train_mode", [True, False])
def test_eval_mode_while_running_and_the_previous_mode_after(train_mode: bool) -> None:
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5)).train(train_mode)
    seen = _run(model, [[0], [1, 2]], step=lambda batch: [m.training for m in model.modules()])
    assert [modes for _, modes in seen] == [[False] * 3] * 2
    assert all(m.training == train_mode for m in model.modules())


def test_the_previous_mode_comes_back_when_a_step_fails() -> None:
    model = nn.Linear(4, 2).train()

    def fail(batch: dict) -> None:
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError, match="step failed"):
        _run(model, [[0]], step=fail)
    assert model.training


def test_steps_run_without_gradients_and_the_caller_keeps_its_own_mode() -> None:
    model = nn.Linear(4, 2)
    between = []
    for _, (grad_enabled, output) in run_batches(model, [[0], [1]], lambda key: {"inputs": torch.ones(1, 4)},
                                                 lambda b: (torch.is_grad_enabled(), model(b["inputs"])),
                                                 EvalOptions()):
        between.append(torch.is_grad_enabled())
        assert not grad_enabled and not output.requires_grad
    assert between == [True, True]


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_bf16_autocast_only_when_asked(precision: str, dtype: torch.dtype) -> None:
    model = nn.Linear(4, 2)
    outputs = [out for _, out in _run(model, [[0, 1]], EvalOptions(precision=precision))]
    assert [out.dtype for out in outputs] == [dtype]
    assert model(torch.ones(1, 4)).dtype == torch.float32      # autocast ends with the runner's step


def test_batches_run_in_the_given_order() -> None:
    model = nn.Linear(4, 2)
    keys = [[5, 3], [0], [4, 1, 2]]
    made: list[list[int]] = []

    def make(key: list[int]) -> dict:
        made.append(key)
        return {"inputs": torch.tensor(key, dtype=torch.float32)[:, None].expand(-1, 4)}

    seen = list(run_batches(model, iter(keys), make, lambda batch: batch["inputs"][:, 0].tolist(), EvalOptions()))
    assert made == keys
    assert seen == [(key, [float(i) for i in key]) for key in keys]


@pytest.mark.parametrize("device", DEVICES)
def test_batches_move_to_the_model_device(device: str) -> None:
    model = nn.Linear(4, 2, device=device)
    batch = {"inputs": torch.ones(2, 4), "lengths": [torch.ones(1)], "names": ["a", "b"]}
    seen = list(run_batches(model, [0], lambda key: batch, lambda b: b, EvalOptions()))
    moved = seen[0][1]
    assert moved["inputs"].device.type == device and moved["lengths"][0].device.type == device
    assert moved["names"] == ["a", "b"] and batch["inputs"].device.type == "cpu"   # the given batch unchanged
    assert to_device(batch, torch.device(device))["inputs"].device.type == device


def test_options_from_parsed_flags_and_their_defaults(tmp_path: Path) -> None:
    assert EvalOptions() == EvalOptions(batch_size=None, precision="fp32", out=None, beams=1, workers=0,
                                        progress=True)
    args = argparse.Namespace(batch_size=7, precision="bf16", out=str(tmp_path), eval_beams=4, workers=2,
                              no_progress=True, data="builtin")
    assert EvalOptions.from_args(args) == EvalOptions(7, "bf16", tmp_path, 4, 2, False)
    assert EvalOptions.from_args(argparse.Namespace(out=None, no_progress=False)) == EvalOptions(progress=True)
    assert EvalOptions.from_args(args, out=None).out is None


def test_trainer_gives_the_run_folder_to_evaluate_without_touching_args_out(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(trainer, "plot_curves", lambda run_dir, metric: Path(run_dir) / "curves.png")   # not drawn
    monkeypatch.chdir(tmp_path)
    task = ToyTask()
    given: list[EvalOptions] = []
    evaluate = task.evaluate
    monkeypatch.setattr(task, "evaluate", lambda model, data, options: given.append(options) or
                        evaluate(model, data, options))
    args = make_args(task, "--batch-size", 8, "--max-steps", 4, "--eval-every", 2)
    run = train(task, args)
    assert args.out is None and run.parent == Path("runs")
    assert [options.out for options in given] == [run, run]
    assert [options.batch_size for options in given] == [8, 8]
    assert json.loads((run / "args.json").read_text())["out"] == str(run)
