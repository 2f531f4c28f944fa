"""How every task evaluates: typed evaluation options and the one loop over batches.

:class:`EvalOptions` holds what ``Task.evaluate`` may read (built from parsed flags by
:meth:`EvalOptions.from_args` in `zoo eval` and once per run in the trainer). :func:`run_batches`
is the loop of every task's evaluation: eval mode (the previous mode restored), no gradients,
autocast at the asked precision (bf16, fp16), batches in the caller's order moved to the model's device; the task
keeps only what it does with each batch's outputs (its metrics).
"""
from __future__ import annotations

import argparse
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from tasks.engine.precision import autocast
from zoo.progress import progress_bar

Key = TypeVar("Key")
Output = TypeVar("Output")

# EvalOptions field -> the flag (argparse dest) it is read from; a flag absent from the parser keeps the default
FLAGS = {"batch_size": "batch_size", "precision": "precision", "out": "out", "beams": "eval_beams",
         "workers": "workers", "ctc_weight": "decode_ctc_weight"}


@dataclass(frozen=True)
class EvalOptions:
    """What an evaluation may read besides the model and the data."""

    batch_size: int | None = None   # items scored together; None: the task's ``eval_batch_size``
    precision: str = "fp32"         # "bf16" / "fp16": forward passes under autocast at that dtype
    out: Path | None = None         # folder for the task's evaluation files (confusion matrix...)
    beams: int = 1                  # beam size of decoding tasks (1 = greedy); `--eval-beams`
    workers: int = 0                # data loading processes, for tasks that load through a DataLoader
    progress: bool = True           # a progress bar (on a terminal, past zoo.progress.DELAY_S)
    split: str | None = None        # what is scored ("validation", "test"...), for the pictures' titles
    step: int | None = None         # the training step of the weights scored, when known
    ctc_weight: float | None = None  # a hybrid CTC/attention model: joint decoding at this CTC weight; None: CTC

    def subject(self) -> str:
        """What is scored, for a picture's title: "validation, step 300", "test" or ""."""
        parts = [self.split] if self.split else []
        if self.step is not None:
            parts.append(f"step {self.step}")
        return ", ".join(parts)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> EvalOptions:
        """The options of parsed `zoo train|eval` flags (``--batch-size``, ``--precision``, ``--out``,
        ``--eval-beams``, ``--workers``, ``--no-progress``, ``--decode-ctc-weight``), then ``overrides``."""
        given = {name: getattr(args, flag) for name, flag in FLAGS.items() if getattr(args, flag, None) is not None}
        if given.get("out") is not None:
            given["out"] = Path(given["out"])
        if hasattr(args, "no_progress"):
            given["progress"] = not args.no_progress
        return cls(**{**given, **overrides})


def label_mapping(data_classes: list[str], model_labels: list[str], source: str) -> torch.Tensor:
    """(C_data,) long: the model's class id of each of the data set's class ids, matched by name."""
    index = {name: i for i, name in enumerate(model_labels)}
    unknown = [name for name in data_classes if name not in index]
    if unknown:
        raise ValueError(f"{source}: class(es) {unknown} are not among the model's labels {model_labels}; "
                         f"give classes=... in the data SPEC to name them as the model does")
    return torch.tensor([index[name] for name in data_classes], dtype=torch.long)


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in it (in dicts, lists, tuples) on ``device``; other values as they are."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_device(v, device) for v in obj)
    return obj


@torch.no_grad()
def run_batches(model: torch.nn.Module, keys: Iterable[Key], make_batch: Callable[[Key], dict[str, Any]],
                step: Callable[[dict[str, Any]], Output], options: EvalOptions) -> Iterator[tuple[Key, Output]]:
    """Yield ``(key, step(batch))`` for each key of ``keys``, in their order.

    ``make_batch(key)`` builds the batch dict of a key (e.g. the indices of its samples); its
    tensors are moved to the model's device, and ``step`` runs on it under autocast when
    ``options.precision`` is "bf16" or "fp16" (nothing else is autocast). The model is in eval mode without
    gradients while the generator runs (torch's no_grad applies to a generator's own frames
    only, so the caller's code between batches runs in its own mode); the previous train/eval mode
    comes back when it finishes or is closed. Consume it to the end.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        total = len(keys) if isinstance(keys, Sized) else None
        for key in progress_bar(keys, total=total, unit="batch", enabled=options.progress):
            batch = to_device(make_batch(key), device)
            with autocast(device.type, options.precision):
                output = step(batch)
            yield key, output
    finally:
        model.train(was_training)
