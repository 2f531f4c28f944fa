"""Checkpoint averaging (``--average-last N``): ``RUN/averaged/``, the uniform mean of the last N checkpoints.

The trainer keeps at least N ``step-N/`` folders (every evaluation and every ``--checkpoint-every``
save writes one; with ``--ema`` they hold the EMA weights) and, when the run ends, averages the
newest N of them up to its last step: every weights file of the model folder (``model.safetensors``,
LoRA's ``adapter.safetensors``) tensor by tensor, floating tensors as their mean and integer
ones (``num_batches_tracked``) taken from the newest. The other files (``config.json``, the
tokenizer) are the newest checkpoint's, so ``averaged/`` is a model folder like any ``step-N/``.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tasks.engine.checkpoints import SHARDED, TRAINER_JSON, TRAINER_TENSORS, checkpoint_step
from zoo.checkpoint import complete_steps
from zoo.errors import ZooError

AVERAGED = "averaged"       # the run folder's averaged model folder
_LEFT_OUT = (TRAINER_TENSORS, TRAINER_JSON, SHARDED)   # resume state, not part of the model


@dataclass(frozen=True)
class Averaged:
    """What :func:`write_average` wrote: the folder and the steps it averaged, oldest first."""

    folder: Path
    steps: list[int]

    def describe(self, asked: int) -> str:
        """One line for the training printout."""
        names = ", ".join(f"step-{s}" for s in self.steps)
        short = "" if len(self.steps) == asked else f" (only {len(self.steps)} of the {asked} asked exist)"
        return f"{self.folder}: mean of the last {len(self.steps)} checkpoints{short}: {names}"


def mean_state(states: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform mean of state dicts of one architecture, read one at a time (a float32 running
    sum: the memory of about three models, whatever their number); integer tensors come from the last."""
    total: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    count = 0
    for state in states:
        if count and state.keys() != last.keys():
            raise ZooError(f"cannot average checkpoints of different models: tensors "
                           f"{sorted(state.keys() ^ last.keys())[:3]} are in some only")
        for name, tensor in state.items():
            if tensor.is_floating_point():
                total[name] = total[name] + tensor.float() if count else tensor.float()
        last, count = state, count + 1
    return {name: (total[name] / count).to(tensor.dtype) if tensor.is_floating_point() else tensor
            for name, tensor in last.items()}


def write_average(run_dir: Path, count: int, up_to: int) -> Averaged:
    """Write ``run_dir/averaged/`` from the newest ``count`` complete checkpoints of steps <= ``up_to``."""
    run_dir = Path(run_dir)
    folders = [f for f in complete_steps(run_dir) if checkpoint_step(f) <= up_to][-count:]
    if not folders:
        raise ZooError(f"--average-last: {run_dir} holds no checkpoint to average")
    newest = folders[-1]
    tmp, final = run_dir / f".tmp-{AVERAGED}", run_dir / AVERAGED
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(newest, tmp, ignore=lambda folder, names: [n for n in names if n in _LEFT_OUT])
    for weights in sorted(tmp.glob("*.safetensors")):
        states = (load_file(str(folder / weights.name)) for folder in folders)
        save_file({k: v.contiguous() for k, v in mean_state(states).items()}, str(weights), metadata={"format": "pt"})
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return Averaged(final, [checkpoint_step(f) for f in folders])
