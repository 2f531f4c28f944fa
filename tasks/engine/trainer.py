"""The training engine every task shares: one plain PyTorch loop (its flags: tasks/engine/flags.py).

``train(task, args)`` reads data and builds the model only through the :class:`Task` object,
then runs the loop in :meth:`_Run.run` (nanoGPT/DETR style: explicit zero_grad, backward,
clip, step). Choices worth knowing:

- AdamW, betas (0.9, 0.95); weight decay only on parameters with 2+ dims (matrices and
  embedding tables), never on biases and norm weights.
- ``--layer-decay RATE`` (fine-tuning) trains block i of a zoo backbone's L at ``RATE^(L-i)``
  of the lr and its stem at ``RATE^(L+1)``, the head at the lr (:mod:`tasks.engine.layer_decay`);
  the schedule below scales every parameter group's own lr.
- Linear warm-up over ``--warmup-steps`` (default: 5% of the plan), then cosine decay to
  10% of ``--lr`` over the planned steps (``--max-steps``, or ``--epochs`` x optimizer steps
  per epoch, the smaller of the two). With only ``--time-budget`` the cosine runs on the
  elapsed fraction of the budget instead (warm-up: 20 steps). With none of the three, one
  epoch is planned. A time budget also stops a planned run early.
- ``--precision`` defaults to fp32 for exactness; bf16 autocast is several times faster on
  CPUs with bf16 matrix units and on GPUs, and task entry points may set it as their default.
  fp16 (CUDA only, for GPUs without bf16) scales the loss with ``torch.amp.GradScaler``: the
  gradients are unscaled before the norm is taken, a step with inf/NaN gradients is skipped
  (and counted) like any non-finite step, and the scale is updated after every step.
- ``--accumulate N`` weighs each micro-batch by the count its loss averages over (a head's
  ``losses["weight"]``, e.g. real tokens; else its rows), so N micro-batches (and the ranks of
  a DDP job) give the loss and gradient of one batch of them all; the logged loss is that one.
- A step whose loss or gradient norm is NaN/inf changes nothing (no optimizer step, gradients
  zeroed) and is counted (``skipped`` in ``metrics.jsonl`` and in the summary);
  ``MAX_BAD_STEPS`` in a row save the last good weights and abort.
- ``--ema DECAY`` keeps an exponential moving average of the trainable parameters and of the
  floating buffers (BatchNorm statistics; integer buffers are copied), with the decay warmed
  up as ``min(DECAY, (1+t)/(10+t))``; evaluation and the saved model use it, the raw weights
  and buffers travel in the trainer state for resuming.
- Evaluation runs with the RNG states put back afterwards, so how often one evaluates never
  changes the training trajectory, and ``--resume`` continues with exactly the losses of an
  uninterrupted run (CPU, fp32): model, optimizer, schedule, step, epoch and position in it,
  EMA, best metric, patience and every RNG state are restored. ``--resume`` reuses the
  run's ``args.json``; flags given with a non-default value override it (``--max-steps``
  to extend a run). The model is rebuilt from the checkpoint itself (``zoo.load``).
- Under ``torchrun`` each global batch of ``--batch-size`` x world size items is split into
  disjoint per-rank slices (the same global order as one process would see); only rank 0
  writes files; losses and the stop decisions are all-reduced, rank 0 evaluates.
  ``--strategy fsdp2`` shards the model instead of replicating it (:func:`distributed.shard_model`):
  the optimizer steps the shards, every rank evaluates (gathering a block at a time), and each
  ``step-N/`` keeps the sharded state in ``dcp/`` (resumable at any world size) beside the
  consolidated ``model.safetensors``.
- The run folder gets ``args.json``, ``metrics.jsonl`` (one row per step, validation metrics
  on evaluation steps), ``curves.png`` (redrawn at evaluations, at most every ``PLOT_EVERY``
  seconds, and at the end), what ``--logger`` asks for (TensorBoard events in ``tensorboard/``,
  the CSV mirror ``metrics.csv``: :mod:`tasks.engine.loggers`) and the checkpoints of
  :mod:`tasks.engine.checkpoints` (the newest ``--keep`` step folders besides best/last).
  ``--average-last N`` keeps at least N step folders and at the end writes ``averaged/``, their
  mean (:mod:`tasks.engine.averaging`); the summary names what ``zoo eval --checkpoint RUN`` reads (``best``).
- ``--lora RANK`` injects peft LoRA adapters into the backbone after it is built (see
  :mod:`zoo.lora`): its base weights freeze, the head trains; a resumed run gets them back
  from its checkpoint. Every run prints its trainable and total parameter counts.
- The progress bar (:mod:`zoo.progress`: on a terminal, unless ``--no-progress``) counts optimizer
  steps out of the plan, or, with only ``--time-budget``, the budget's seconds.
- ``--distill-from RUN_DIR`` swaps the loss for :mod:`tasks.engine.distill`'s mix of the head's
  loss and the KL to a teacher's soft outputs (the one loss hook, ``self.loss``); ``train(task,
  args, model=...)`` starts from a built model (``zoo prune`` fine-tunes its pruned one).
- ``--workers N`` collates in N processes; each batch there reseeds torch/random/numpy from
  (seed, epoch, batch, rank), so random augmentation does not depend on where a run resumed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.nn.utils import clip_grads_with_norm_
from torch.utils.data import DataLoader, Dataset, get_worker_info
from tqdm import tqdm

import zoo
from tasks.engine import distributed
from tasks.engine.averaging import AVERAGED, write_average
from tasks.engine.checkpoints import (SHARDED, consolidated_weights, load_sharded, load_trainer_state, point_best,
                                      resolve_checkpoint, rng_state, save_sharded, save_trainer_state,
                                      set_rng_state, sharded_folder, write_checkpoint)
from tasks.engine.curves import plot_curves, write_atomically
from tasks.engine.loggers import EXPLANATIONS, RunLoggers
from tasks.engine.evaluation import EvalOptions, to_device
from tasks.engine.flags import TRAIN_PRECISIONS, add_train_arguments
from tasks.engine.layer_decay import layer_scales
from tasks.engine.precision import AUTO, autocast, grad_scaler, resolve_precision
from tasks.engine.task import Task
from zoo.checkpoint import complete_steps
from zoo.errors import ZooError
from zoo.lora import add_lora, parameter_counts, resolve_targets
from zoo.progress import progress_bar

__all__ = ["EMA", "TrainState", "add_train_arguments", "build_optimizer", "lr_at", "resolve_checkpoint", "train"]

MAX_BAD_STEPS = 20          # consecutive non-finite steps before the run aborts
LR_FLOOR = 0.1              # the cosine ends at this fraction of --lr
PLOT_EVERY = 30.0           # seconds between redraws of curves.png (at evaluations, and always at the end)
_NOT_RESTORED = ("resume", "out", "init_backbone")


def train(task: Task, args: argparse.Namespace, model: torch.nn.Module | None = None) -> Path:
    """Train ``task``'s model as ``args`` say (``model``: start from this built model instead of
    ``task.build_model``, as ``zoo prune`` fine-tunes); returns the run folder (on every rank)."""
    ctx = distributed.setup(args.device)
    try:
        return _Run(task, args, ctx, model).run()
    finally:
        ctx.close()


def lr_at(step: int, base_lr: float, warmup: int, progress: float, floor: float = LR_FLOOR) -> float:
    """Learning rate of optimizer step ``step`` (0-based).

    Linear warm-up reaching ``base_lr`` at step ``warmup - 1``; afterwards cosine from
    ``base_lr`` down to ``floor * base_lr`` as ``progress`` goes from 0 to 1 (clamped).
    """
    # ours, not torch.optim.lr_scheduler: a scheduler counts steps, this follows the clock under --time-budget
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(max(progress, 0.0), 1.0)
    return base_lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device,
                    layer_decay: float = 1.0) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; decay on matrices only (not biases, norms, 1-D tensors).

    ``layer_decay`` below 1 splits both groups by depth (:mod:`tasks.engine.layer_decay`): each
    group's ``lr_scale`` multiplies ``lr`` here and the scheduled lr at every step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (is everything frozen?)")
    scales = layer_scales(model, layer_decay) if layer_decay != 1.0 else {id(p): 1.0 for p in params}
    groups = []
    for scale in sorted({scales[id(p)] for p in params}):
        share = [p for p in params if scales[id(p)] == scale]
        extra = {"lr": lr * scale, "lr_scale": scale} if layer_decay != 1.0 else {}
        groups += [{"params": [p for p in share if p.ndim >= 2], "weight_decay": weight_decay, **extra},
                   {"params": [p for p in share if p.ndim < 2], "weight_decay": 0.0, **extra}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.95),
                             fused=device.type == "cuda")


class EMA:
    """Exponential moving average of a model's trainable parameters and of its saved buffers.

    Floating buffers (BatchNorm running statistics) are averaged like the parameters, integer
    ones (``num_batches_tracked``) copied, as ``torch.optim.swa_utils.AveragedModel(use_buffers=True)``
    and timm's ``ModelEmaV3`` do: the averaged weights are evaluated with statistics of their own.
    ``tracked`` names every tensor the EMA replaces (the trainer saves their raw values for resuming).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        saved = model.state_dict(keep_vars=True)
        self.tracked: dict[str, torch.Tensor] = {
            **{name: p for name, p in model.named_parameters() if p.requires_grad},
            **{name: saved[name] for name, _ in model.named_buffers() if name in saved}}   # persistent buffers only
        self.shadow = self.raw()

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Blend the current weights in, with the decay warmed up over the first steps."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, tensor in self.tracked.items():
            if tensor.is_floating_point():
                self.shadow[name].lerp_(tensor.detach(), 1.0 - decay)
            else:
                self.shadow[name].copy_(tensor)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the raw ones come back after."""
        raw = self.raw()
        with torch.no_grad():
            for name, tensor in self.tracked.items():
                tensor.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, tensor in self.tracked.items():
                    tensor.copy_(raw[name])

    def raw(self) -> dict[str, torch.Tensor]:
        """Copies of the model's own (not averaged) values of every tracked tensor."""
        return {name: t.detach().clone() for name, t in self.tracked.items()}


@dataclass
class TrainState:
    """The scalars a resumed run needs (saved in ``trainer_state.json``)."""

    step: int = 0
    epoch: int = 0
    position: int = 0               # batches of ``epoch`` already consumed
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0              # evaluations since the best one (patience)
    skipped: int = 0                # non-finite steps skipped in total
    consecutive_bad: int = 0
    elapsed: float = 0.0            # seconds of training up to this checkpoint


class _Run:
    """One training run: set-up in ``__init__``, the loop in :meth:`run`."""

    def __init__(self, task: Task, args: argparse.Namespace, ctx: distributed.Dist,
                 model: torch.nn.Module | None = None) -> None:
        resume = resolve_checkpoint(args.resume, "last") if args.resume else None
        if resume is not None:
            args = _resumed_args(task, args, _run_folder_of(Path(args.resume)))
        self.task, self.args, self.ctx, self.device = task, args, ctx, ctx.device
        if ctx.active:
            distributed.check_strategy(args)
        if args.precision == AUTO:      # args.json and the summary record what auto chose
            args.precision = resolve_precision(AUTO, self.device, TRAIN_PRECISIONS)
            self._print(f"--precision auto: {args.precision} on {self.device.type}")
        self.out = Path(ctx.broadcast(str(args.out or (resume.parent if resume else _default_out(task)))))
        self.eval_options = EvalOptions.from_args(args, out=self.out, split="validation")  # evaluate writes here
        self.state = TrainState()
        if ctx.is_main and resume is None and any(self.out.glob("step-*")):
            raise FileExistsError(f"{self.out} already holds checkpoints; pass --resume {self.out} or another --out")
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        _seed_all(args.seed + ctx.rank)
        self.train_set = task.datasets(args.data, "train")
        # a --val-data file is validation data as a whole; a built-in set (or no --val-data) gives its validation split
        val_spec = args.val_data or args.data
        self.val_set = task.datasets(val_spec, "all" if args.val_data and not val_spec.startswith("builtin")
                                     else "validation")
        self.model = self._model(resume, model)
        self.train_set = task.for_model(self.train_set, self.model)
        self.loss = self._loss()
        self.ema = EMA(self.model, args.ema) if args.ema and ctx.is_main else None
        self.ddp = ctx.wrap(self.model, args.strategy)      # before the optimizer: FSDP2 swaps in the shards
        self.sharded = distributed.is_sharded(self.ddp)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, args.lr, args.weight_decay, self.device,
                                         args.layer_decay)
        self.scaler = grad_scaler(args.precision, self.device)      # fp16 on CUDA only
        rng = self._restore(resume) if resume is not None else None
        self.saved_step = self.state.step if resume is not None else None
        self.stream = _Stream(task, self.train_set, task.make_collate(self.model, train=True), args, ctx,
                              self.state.epoch, self.state.position)
        self.planned = _planned_steps(args, self.stream.batches_per_epoch)
        self.warmup = (args.warmup_steps if args.warmup_steps is not None
                       else max(1, self.planned // 20) if self.planned is not None else 20)
        self.net = torch.compile(self.ddp) if args.compile else self.ddp
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "args.json").write_text(json.dumps({**vars(args), "out": str(self.out)}, indent=1,
                                                           default=str) + "\n")
            _truncate_metrics(self.out / "metrics.jsonl", self.state.step)
        self.loggers = RunLoggers(self.out, args.logger, vars(args), self.state.step) if ctx.is_main else None
        self.bar = _training_bar(self.planned, args.time_budget, self.state,
                                 enabled=not args.no_progress and ctx.is_main)
        self.started, self.elapsed_before = time.perf_counter(), self.state.elapsed
        self.plotted = -math.inf
        if rng is not None:
            set_rng_state(rng)      # last: nothing above may shift the random streams of the loop

    def run(self) -> Path:
        """Train until the planned steps, the time budget or patience run out; returns the run folder."""
        args, s, keys = self.args, self.state, None
        reason = "already finished" if self.planned is not None and s.step >= self.planned else None
        try:
            while reason is None:
                started, lr = time.perf_counter(), self._lr()
                sums, shares, items, keys = self._micro_batches(keys)
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)       # the norm, the clip and the step see true gradients
                grad_norm = self.ctx.grad_norm(self.params)
                bad = ~(torch.isfinite(sums[0]) & torch.isfinite(grad_norm))
                time_up = args.time_budget is not None and self._elapsed() >= args.time_budget
                flags = self.ctx.all_reduce_sum(torch.cat([sums, shares, grad_norm.reshape(1),
                                                           bad.float().reshape(1),
                                                           torch.tensor([float(time_up)], device=self.device)]))
                *reduced, norm, bad_ranks, up_ranks = flags.tolist()
                weighted, counted = reduced[:len(keys)], reduced[len(keys):]
                total = counted[0]      # the total loss is in every micro-batch: its share is the step's
                skipped = bad_ranks > 0 or not total > 0
                # gradients hold DDP's rank mean of sum(share * grad of a micro-batch mean); times
                # ``scale`` they are the gradient of the mean over all the step's items (tokens)
                scale = self.ctx.world_size / total if not skipped else 1.0
                means = [None if skipped or not c > 0 else v / c for v, c in zip(weighted, counted)]
                norm = None if skipped else norm / self.ctx.world_size * scale   # every rank: the same norm
                if skipped:
                    s.skipped, s.consecutive_bad = s.skipped + 1, s.consecutive_bad + 1
                else:
                    if scale != 1.0:
                        for param in self.params:
                            if param.grad is not None:
                                param.grad.mul_(scale)
                    if args.grad_clip > 0:
                        clip_grads_with_norm_(self.params, args.grad_clip, grad_norm * scale)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr * group.get("lr_scale", 1.0)
                    if self.scaler is not None:
                        self.scaler.step(self.optimizer)
                    else:
                        self.optimizer.step()
                    s.consecutive_bad = 0
                    if self.ema is not None:
                        self.ema.update(s.step)
                if self.scaler is not None:
                    self.scaler.update()       # a skipped (overflowing) step lowers the scale
                self.optimizer.zero_grad(set_to_none=True)
                s.step += 1
                train_row = {f"train_{k}": v for k, v in zip(keys, means)}
                train_row.update(lr=lr, grad_norm=norm,
                                 items_per_s=items * self.ctx.world_size / (time.perf_counter() - started))
                reason = self._after_step(train_row, time_up=up_ranks > 0)
            self._log_explanations()
        finally:
            self.bar.close()
            if self.loggers is not None:
                self.loggers.close()
        self._average()
        self._summary(reason)
        return self.out

    def _average(self) -> None:
        """With ``--average-last N``: rank 0 writes ``averaged/`` from the last N checkpoints; all ranks wait."""
        if self.args.average_last is None:
            return
        if self.ctx.is_main:
            averaged = write_average(self.out, self.args.average_last, self.state.step)
            self._print(averaged.describe(self.args.average_last))
        self.ctx.barrier()

    def _log_explanations(self) -> None:
        """Rank 0 of an unsharded run with TensorBoard on: pictures explaining a few validation inputs with
        the final (EMA when on) weights, into ``RUN/explanations/`` and the events (seconds; RNG untouched)."""
        if not self.ctx.is_main or self.sharded or self.loggers.events is None or self.val_set is None:
            return
        from tasks.engine.explanations import explain_samples   # the task's explain code: only when logging

        self.model.eval()
        with _rng_kept(self.device), self._ema_weights():
            pngs = explain_samples(self.task, self.model, self.val_set, self.out / EXPLANATIONS)
        self.model.train()
        self.loggers.explanations(pngs, self.state.step)

    def _micro_batches(self, keys: list[str] | None) -> tuple[torch.Tensor, torch.Tensor, int, list[str]]:
        """Forward and backward the step's ``--accumulate`` micro-batches, each weighted by its size.

        A micro-batch's size is the count its loss is a mean over, ``losses["weight"]`` (heads give
        their real tokens), or else its number of rows. Its loss is back-propagated times its share
        ``size / unit`` (``unit``: the first micro-batch's size in one process, so a plain step is
        unscaled; 1 across processes, so every rank weighs alike); :meth:`run` divides the
        gradients by the all-reduced total share, so the step is the one of a single batch of them
        all (tokens: the loss of N micro-batches is the loss of their concatenation).
        A logged part that is None in a micro-batch (a multi-task step without that task's data set) is
        left out of its mean. Returns (share-weighted logged losses (K,), their shares (K,): the first,
        of the total loss, is the step's total share; items, the logged loss names).
        """
        unit = sums = shares = None
        items = 0
        for micro in range(self.args.accumulate):
            batch, n = self.stream.next()
            with self.ctx.no_sync(self.ddp, micro < self.args.accumulate - 1), self._autocast():
                losses = self.loss(self.net(batch), batch)
            size = torch.as_tensor(losses.get("weight", n), dtype=torch.float32, device=self.device).detach()
            if unit is None:
                unit = size.clamp(min=1.0) if self.ctx.world_size == 1 else torch.ones((), device=self.device)
            share = size / unit
            loss = losses["loss"] * share
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            keys = keys or ["loss", *sorted(k for k in losses if k not in ("loss", "weight"))]
            present = torch.tensor([losses[k] is not None for k in keys], device=self.device).float() * share
            values = torch.stack([torch.zeros((), device=self.device) if losses[k] is None else
                                  torch.as_tensor(losses[k]).detach().float().to(self.device) for k in keys]) * present
            sums = values if sums is None else sums + values
            shares = present if shares is None else shares + present
            items += n
        return sums, shares, items, keys

    # ---- after each step: log, evaluate, save, decide -----------------------------------------
    def _after_step(self, row: dict[str, Any], time_up: bool) -> str | None:
        args, s = self.args, self.state
        if s.consecutive_bad >= MAX_BAD_STEPS:
            self._checkpoint(best=False)
            raise RuntimeError(
                f"{MAX_BAD_STEPS} steps in a row had a NaN/inf loss or gradient (up to step {s.step}); "
                f"the last good weights are saved in {self.out / 'last'}. Try a lower --lr, --grad-clip, "
                f"or --precision fp32.")
        reason = None
        if self.planned is not None and s.step >= self.planned:
            reason = "planned steps done"
        elif time_up:
            reason = "time budget reached"
        evaluate = reason is not None or (args.eval_every > 0 and s.step % args.eval_every == 0)
        improved = False
        if evaluate:
            metrics = self._evaluate()
            value = metrics[self.task.metric.name]
            improved = self.task.metric.better(value, s.best)
            if improved:
                s.best, s.best_step, s.bad_evals = value, s.step, 0
            else:
                s.bad_evals += 1
            if reason is None and args.patience > 0 and s.bad_evals >= args.patience:
                reason = f"no improvement in {args.patience} evaluations"
            row.update({f"val_{k}": v for k, v in metrics.items()})
            self._print(f"step {s.step}: " + ", ".join(f"{k}={_short(v)}" for k, v in metrics.items()))
        row = {"step": s.step, "epoch": round(self.stream.epoch_fraction, 4), **row,
               "elapsed": round(self._elapsed(), 3), "skipped": s.skipped}
        if self.ctx.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            self.loggers.row(row)
        if evaluate or (args.checkpoint_every > 0 and s.step % args.checkpoint_every == 0):
            self._checkpoint(best=improved)
        if evaluate and self.ctx.is_main and (reason is not None or time.perf_counter() > self.plotted + PLOT_EVERY):
            self.loggers.picture("curves", plot_curves(self.out, self.task.metric.name), s.step)
            self.plotted = time.perf_counter()
        if evaluate and self.ctx.is_main:
            self.loggers.flush()
        if self.planned is None:     # the bar counts seconds of the time budget
            self.bar.update(round(min(self._elapsed(), args.time_budget), 1) - self.bar.n)
            self.bar.set_postfix(step=s.step, loss=_short(row["train_loss"]), lr=f"{row['lr']:.2e}", refresh=False)
        else:
            self.bar.update(1)
            self.bar.set_postfix(loss=_short(row["train_loss"]), lr=f"{row['lr']:.2e}", refresh=False)
        return reason

    def _evaluate(self) -> dict[str, Any]:
        """Rank 0 evaluates (EMA weights when on, RNG untouched); every rank gets the metrics.

        A sharded model is evaluated by every rank alike, since each forward gathers its blocks
        from all ranks; only rank 0 writes evaluation files, and its metrics count.
        """
        metrics = None
        if self.ctx.is_main or self.sharded:
            options = replace(self.eval_options, step=self.state.step)   # the step names the pictures
            if not self.ctx.is_main:
                options = replace(options, out=None, progress=False)
            self.model.eval()
            with _rng_kept(self.device), torch.no_grad(), self._ema_weights(), self._autocast():
                evaluated = self.task.evaluate(self.model, self.val_set, options)
                metrics = {k: _plain(v) for k, v in evaluated.items()}
                if self.ctx.is_main and self.loggers.events is not None:
                    self.loggers.evaluation(self.state.step, self.task.evaluation_pictures,
                                            self.task.decoded_samples(self.model, self.val_set))
            self.model.train()
        if self.ctx.is_main and self.task.metric.name not in metrics:
            raise KeyError(f"{self.task.name}.evaluate returned {sorted(metrics)} without the primary "
                           f"metric {self.task.metric.name!r}")
        return self.ctx.broadcast(metrics)

    # ---- checkpoints and resume --------------------------------------------------------------
    def _checkpoint(self, best: bool) -> None:
        """Save ``step-N`` (model + trainer state) and switch the pointers; rank 0 writes."""
        s = self.state
        s.epoch, s.position, s.elapsed = self.stream.epoch, self.stream.position, self._elapsed()
        rngs = self.ctx.gather(rng_state())
        if s.step == self.saved_step:       # these weights are on disk already
            if best and self.ctx.is_main:
                point_best(self.out, s.step)
            return
        weights = self._save_sharded() if self.sharded else None
        if not self.ctx.is_main:
            return
        tensors: dict[str, torch.Tensor] = {}
        for index, slots in ({} if self.sharded else self.optimizer.state_dict()["state"]).items():
            tensors.update({f"optim.{index}.{name}": value for name, value in slots.items()})
        if self.ema is not None:     # raw weights and buffers (the model file gets the EMA)
            tensors.update({f"model.{name}": value for name, value in self.ema.raw().items()})
        json_rngs = []
        for rank, rng in enumerate(rngs):
            tensors.update({f"rng.{rank}.{k}": v for k, v in rng.items() if isinstance(v, torch.Tensor)})
            json_rngs.append({k: v for k, v in rng.items() if not isinstance(v, torch.Tensor)})
        info = {"format": 1, "state": asdict(s), "world_size": self.ctx.world_size, "rng": json_rngs,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

        def write(folder: Path) -> None:
            if weights is not None:
                os.rename(sharded_folder(self.out, s.step), folder / SHARDED)
                self.model.save(folder, weights=weights)
            else:
                with self._ema_weights():
                    self.model.save(folder)
            save_trainer_state(folder, tensors, info)

        write_checkpoint(self.out, s.step, write, best=best, keep=max(self.args.keep, self.args.average_last or 0))
        self.saved_step = s.step

    def _save_sharded(self) -> dict[str, torch.Tensor]:
        """Every rank writes its shards of this step's model and optimizer (DCP) into the hidden
        folder the checkpoint writer moves in; returns the consolidated weights (on rank 0)."""
        folder = sharded_folder(self.out, self.state.step)
        if self.ctx.is_main:
            shutil.rmtree(folder, ignore_errors=True)     # left by a run killed while saving
        self.ctx.barrier()
        save_sharded(folder, self.model, self.optimizer)
        return consolidated_weights(self.model)

    def _model(self, resume: Path | None, given: torch.nn.Module | None) -> torch.nn.Module:
        if given is not None:
            model = given
        elif resume is not None:
            model = zoo.load(resume)
        else:
            model = self.task.build_model(self.args, self.train_set)
            source = self.args.init_backbone
            if source:
                report = getattr(model, "pretrained_report", None)   # set when zoo.create_model(pretrained=) built it
                if report is None:   # the task rebuilt a zoo checkpoint's architecture: copy its backbone in
                    source = resolve_checkpoint(source, "best")
                    report = model.load_backbone_from(source)
                self._print(f"backbone from {source}: {report}")
        if not (self.ctx.active and self.args.strategy == "fsdp2"):
            model.to(self.device)        # FSDP2 moves each shard there itself: the whole model never is
        model.train()
        if self.args.freeze_backbone:
            model.backbone.requires_grad_(False)
        self._lora(model)
        return model

    def _loss(self) -> Callable[[dict, dict], dict]:
        """The head's loss, or with ``--distill-from`` its mix with the teacher's soft outputs."""
        if not getattr(self.args, "distill_from", None):
            return self.model.loss
        from tasks.engine.distill import distiller

        self._print(f"distilling from {self.args.distill_from} (weight {self.args.distill_weight:g}, "
                    f"temperature {self.args.distill_temperature:g})")
        return distiller(self.task, self.args.distill_from, self.model, self.args.distill_weight,
                         self.args.distill_temperature, self.device)

    def _lora(self, model: torch.nn.Module) -> None:
        """Inject ``--lora`` adapters (a resumed LoRA run has them from its checkpoint); print what trains."""
        args = self.args
        if args.lora is not None and getattr(model, "lora", None) is None:
            if args.freeze_backbone:
                raise ZooError("--freeze-backbone freezes the LoRA adapters too; pass --lora or --freeze-backbone")
            try:
                targets = resolve_targets(model.backbone, args.lora_targets)
            except ZooError as err:
                raise ZooError(f"--lora-targets: {err}") from None
            spec = add_lora(model, args.lora, args.lora_alpha, targets, args.lora_dropout)
            self._print(f"LoRA rank {spec.rank} (alpha {spec.alpha:g}) on {len(spec.targets)} linear layers: "
                        f"{', '.join(spec.targets)}")
        trainable, total = parameter_counts(model)
        self._print(f"parameters: {trainable:,} trainable of {total:,} ({100 * trainable / max(total, 1):.2f}%)")

    def _restore(self, folder: Path) -> dict[str, Any]:
        """Load optimizer, raw weights (under EMA) and scalars; returns this rank's RNG state."""
        tensors, info = load_trainer_state(folder)
        self.state = TrainState(**info["state"])
        if (folder / SHARDED).is_dir():       # a sharded run's: loads at any world size, sharded or not
            load_sharded(folder / SHARDED, self.model, self.optimizer)
        elif self.sharded:
            raise ZooError(f"{folder} was saved unsharded (--strategy ddp or one process); resume it with "
                           f"--strategy ddp")
        else:
            self._restore_unsharded(tensors)
        if self.scaler is not None and info.get("scaler"):
            self.scaler.load_state_dict(info["scaler"])
        rank = self.ctx.rank
        if rank >= len(info["rng"]):
            self._print(f"resuming with more processes than {folder} was saved with: fresh RNG streams")
            _seed_all(self.args.seed + rank + self.state.step)
            return rng_state()
        prefix = f"rng.{rank}."
        return {**info["rng"][rank], **{k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}}

    def _restore_unsharded(self, tensors: dict[str, torch.Tensor]) -> None:
        """Raw weights (under EMA) and the optimizer state of a checkpoint without ``dcp/``."""
        own = self.model.state_dict(keep_vars=True)
        slots: dict[int, dict[str, torch.Tensor]] = {}
        with torch.no_grad():
            for key, value in tensors.items():
                if key.startswith("model."):
                    own[key[len("model."):]].copy_(value)
                elif key.startswith("optim."):
                    _, index, name = key.split(".", 2)
                    slots.setdefault(int(index), {})[name] = value
        optimizer_state = self.optimizer.state_dict()
        optimizer_state["state"] = slots
        self.optimizer.load_state_dict(optimizer_state)

    # ---- small helpers -------------------------------------------------------------------------
    def _lr(self) -> float:
        step = self.state.step
        if self.planned is not None:
            progress = (step - self.warmup) / max(1, self.planned - self.warmup)
        else:
            progress = self._elapsed() / self.args.time_budget
        return lr_at(step, self.args.lr, self.warmup, progress)

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _autocast(self):
        return autocast(self.device.type, self.args.precision)

    def _ema_weights(self):
        return self.ema.applied() if self.ema is not None else nullcontext()

    def _print(self, message: str) -> None:
        if self.ctx.is_main:
            tqdm.write(message)

    def _summary(self, reason: str | None) -> None:
        s, metric = self.state, self.task.metric.name
        best = f"best {metric} {_short(s.best)} at step {s.best_step}" if s.best is not None else "not evaluated"
        self._print(f"{self.task.name}: {reason} at step {s.step} (epoch {self.stream.epoch_fraction:.2f}, "
                    f"{self._elapsed():.1f}s, {self.args.precision}); {best}; {s.skipped} non-finite steps skipped; run folder {self.out}")
        if self.ctx.is_main and complete_steps(self.out):
            averaged = (f"; the averaged model: zoo eval --checkpoint {self.out / AVERAGED}"
                        if self.args.average_last is not None else "")
            self._print(f"zoo eval --checkpoint {self.out} evaluates its best checkpoint, "
                        f"{resolve_checkpoint(self.out, 'best').name}{averaged}")


class _Stream:
    """Endless training batches in a seeded order, resumable at (epoch, position).

    Each epoch's order of global batches comes from ``task.batch_sampler`` or a permutation,
    with a generator seeded ``seed + epoch``; each rank collates its slice of every batch.
    """

    def __init__(self, task: Task, dataset: Dataset, collate: Callable[[list[dict]], dict],
                 args: argparse.Namespace, ctx: distributed.Dist, epoch: int, position: int) -> None:
        self.task, self.dataset, self.collate, self.args, self.ctx = task, dataset, collate, args, ctx
        self.epoch, self.position = epoch, position
        first = self._order(0)
        self.batches_per_epoch = len(first)
        self._start(first if epoch == 0 else None)

    @property
    def epoch_fraction(self) -> float:
        return self.epoch + self.position / len(self.order)

    def next(self) -> tuple[dict, int]:
        """The next batch (on the device) and its number of items on this rank."""
        if self.position >= len(self.order):
            self.epoch, self.position = self.epoch + 1, 0
            self._start()
        batch, n = next(self.loader)
        self.position += 1
        return to_device(batch, self.ctx.device), n

    def _order(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.args.seed + epoch)
        size = self.args.batch_size * self.ctx.world_size
        custom = self.task.batch_sampler(self.dataset, size, generator, train=True)
        if custom is None:
            permutation = torch.randperm(len(self.dataset), generator=generator).tolist()
            custom = (permutation[i:i + size] for i in range(0, len(permutation), size))
        order = [list(b) for b in custom if len(b) >= self.ctx.world_size]
        if not order:
            raise ValueError(f"the training set ({len(self.dataset)} items) gives no batch for "
                             f"{self.ctx.world_size} process(es)")
        return order

    def _start(self, order: list[list[int]] | None = None) -> None:
        self.order = order if order is not None else self._order(self.epoch)
        rest = range(min(self.position, len(self.order)), len(self.order))
        seeds = [hash((self.args.seed, self.epoch, i, self.ctx.rank)) % 2**32 for i in rest]
        batches = _Batches(self.dataset, [self.ctx.shard(self.order[i]) for i in rest], self.collate, seeds)
        self.loader = iter(DataLoader(batches, batch_size=None, num_workers=self.args.workers,
                                      collate_fn=_unchanged, pin_memory=self.ctx.device.type == "cuda",
                                      generator=torch.Generator().manual_seed(self.args.seed + self.epoch)))


class _Batches(Dataset):
    """Collated batches of index lists; in a loader worker each batch reseeds the RNGs first."""

    def __init__(self, dataset: Dataset, batches: list[list[int]], collate: Callable, seeds: list[int]) -> None:
        self.dataset, self.batches, self.collate, self.seeds = dataset, batches, collate, seeds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[dict, int]:
        if get_worker_info() is not None:
            _seed_all(self.seeds[i])
        return self.collate([self.dataset[j] for j in self.batches[i]]), len(self.batches[i])


def _unchanged(item: Any) -> Any:
    return item


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextmanager
def _rng_kept(device: torch.device) -> Iterator[None]:
    """Run a block (evaluation) without moving any RNG stream the training loop draws from."""
    python, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    random.setstate(python)
    np.random.set_state(numpy_state)


def _training_bar(planned: int | None, budget: float | None, state: TrainState, enabled: bool) -> tqdm:
    """The training bar: optimizer steps out of the plan, or, with only ``--time-budget``, its seconds."""
    if planned is None:
        return progress_bar(total=budget, initial=round(min(state.elapsed, budget), 1), unit="s", enabled=enabled,
                            leave=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s "
                                                   "[{elapsed}<{remaining}{postfix}]")
    return progress_bar(total=planned, initial=state.step, unit="step", enabled=enabled, leave=True)


def _planned_steps(args: argparse.Namespace, batches_per_epoch: int) -> int | None:
    """Optimizer steps the schedule plans for; None when only a time budget bounds the run."""
    plans = [] if args.max_steps is None else [args.max_steps]
    epochs = args.epochs
    if epochs is None and args.max_steps is None and args.time_budget is None:
        epochs = 1
    if epochs is not None:
        plans.append(max(1, int(epochs * batches_per_epoch) // args.accumulate))
    return min(plans, default=None)


def _resumed_args(task: Task, args: argparse.Namespace, run_dir: Path) -> argparse.Namespace:
    """The run's saved ``args.json``, overridden by every flag given here with a non-default value."""
    saved_file = run_dir / "args.json"
    if not saved_file.is_file():
        return args
    saved = json.loads(saved_file.read_text())
    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser)
    task.add_arguments(parser)
    merged = vars(args).copy()
    for key, value in saved.items():
        if key in merged and key not in _NOT_RESTORED and merged[key] == parser.get_default(key):
            merged[key] = value
    return argparse.Namespace(**merged)


def _run_folder_of(path: Path) -> Path:
    """A run folder, or the run folder holding the checkpoint folder ``path``."""
    return path.parent if (path / "config.json").is_file() else path


def _default_out(task: Task) -> Path:
    return Path("runs") / f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (a resumed run rewrites them); create the file if missing."""
    rows = path.read_text().splitlines() if path.is_file() else []
    kept = [line for line in rows if line.strip() and json.loads(line)["step"] <= step]
    write_atomically(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))


def _plain(value: Any) -> Any:
    """A metric value as a JSON-able Python scalar (tensors and numpy numbers unwrapped)."""
    return value.item() if isinstance(value, (torch.Tensor, np.generic)) else value


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
