"""`zoo multitask`: one backbone shared by several tasks, each with its own head, data set, collate, loss
and metrics, trained by the shared trainer (:mod:`tasks.engine.trainer`).

    zoo multitask --part sentiment --part text_generation --backbone text_decoder_tiny \\
        --data-for text_generation=builtin:fortunes --best sentiment/accuracy --time-budget 600

The model is a :class:`zoo.multihead.MultiHeadModel` whose heads are named after the tasks; each head's
spec and the model's preprocessing come from its task (``Task.head_spec``, ``Task.preprocessing``), and
one tokenizer is trained on every part's training texts (``Task.texts``). A step's batch is
``{"parts": {task: batch}}``, each part collated by its own task, so the backbone runs on each part's
inputs and only that part's head reads them. The loss is ``sum(weight[task] * loss/<task>)``
(``--weights``), each part logged as ``train_loss/<task>``.

Sampling (``--sampling``):

- ``alternate``: every step takes one batch (``--batch-size`` items) of every part and sums their
  weighted losses; an epoch is the largest part's number of batches, a smaller part starting a new
  shuffled pass whenever it runs out.
- ``proportional``: every step takes one batch of one part; an epoch is every part's batches once, in a
  shuffled order, so a step draws a part with probability proportional to its data set size (its
  batches) and every sample is seen once per epoch.

Evaluation scores each part with its own task's ``evaluate`` on its validation split, the metrics as
``<task>/<metric>`` (``val_<task>/<metric>`` in ``metrics.jsonl``; each task's evaluation files in
``RUN/<task>/``); ``best/`` follows ``--best TASK/METRIC``, a task's primary metric (its direction).
The checkpoint is a plain multi-head model: ``zoo eval TASK --checkpoint RUN --head TASK`` scores one part
on the test split of the data set it was trained on, ``zoo predict TASK ... --head TASK`` predicts.
"""
from __future__ import annotations

import argparse
import itertools
import math
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch.utils.data import Dataset

import zoo
from tasks.engine.batching import ordered_chunks
from tasks.engine.commands import check_train_args, command_parser, train_args
from tasks.engine.data import parse_spec
from tasks.engine.evaluation import EvalOptions
from tasks.engine.flags import VOCAB_SIZE
from tasks.engine.task import Metric, Task
from zoo.cli import ArgumentParser
from zoo.errors import ZooError
from zoo.multihead import PARTS, MultiHeadModel
from zoo.registry import BACKBONES, COMMANDS
from zoo.tokenizer import Tokenizer

PROG = "zoo multitask"
SAMPLINGS = ("alternate", "proportional")
PART = "_part"      # the sample key naming the part a sample of :class:`Parts` comes from
SAMPLING_HELP = ("alternate: every step takes one batch of every part and sums the weighted losses; "
                 "proportional: every step takes one batch of one part, drawn in proportion to the parts' "
                 "data set sizes (every sample once per epoch)")


class Parts(Dataset):
    """Several tasks' data sets as one: item ``i`` is a sample of one part, tagged with its name (``_part``)."""

    def __init__(self, sets: Mapping[str, Dataset]) -> None:
        self.sets = dict(sets)
        sizes = [len(data) for data in self.sets.values()]
        self.starts = dict(zip(self.sets, itertools.accumulate(sizes, initial=0)))

    def __len__(self) -> int:
        return sum(len(data) for data in self.sets.values())

    def __getitem__(self, index: int) -> dict[str, Any]:
        for name, data in self.sets.items():
            local = index - self.starts[name]
            if 0 <= local < len(data):
                return {**data[local], PART: name}
        raise IndexError(f"index {index} is past the {len(self)} samples of the parts")


def assignments(values: list[str] | Mapping[str, Any] | None, flag: str, parts: list[str],
                what: str) -> dict[str, str]:
    """``TASK=VALUE`` flags (or a resumed run's ``{task: value}``) as ``{task: value}``; a malformed entry or a
    task that is no ``--part`` refused."""
    if isinstance(values, Mapping):
        values = [f"{name}={value}" for name, value in values.items() if value != ""]
    given: dict[str, str] = {}
    for entry in values or []:
        name, sep, value = entry.partition("=")
        if not sep or not value:
            raise ZooError(f"{flag} {entry}: expected TASK={what}, e.g. {flag} {parts[0]}=...")
        if name not in parts:
            raise ZooError(f"{flag} {entry}: {name!r} is not a --part (parts: {', '.join(parts)})")
        if name in given:
            raise ZooError(f"{flag}: {name} is given twice; give each part once")
        given[name] = value
    return given


def _weights(values: list[str] | None, parts: list[str]) -> dict[str, float]:
    """``--weights TASK=W`` as every part's loss weight (1 unless given)."""
    weights = {name: 1.0 for name in parts}
    for name, text in assignments(values, "--weights", parts, "WEIGHT").items():
        try:
            weight = float(text)
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight >= 0):
            raise ZooError(f"--weights {name}={text}: expected a finite number >= 0")
        weights[name] = weight
    if not any(weights.values()):
        raise ZooError("--weights are all 0: no part would learn; give at least one a positive weight")
    return weights


def _best(text: str | None, parts: dict[str, Task]) -> Metric:
    """``--best TASK/METRIC`` as the run's Metric: a part's primary metric, keyed ``TASK/METRIC``."""
    first = next(iter(parts))
    text = text or f"{first}/{parts[first].metric.name}"
    name, _, metric = text.partition("/")
    choices = ", ".join(f"{n}/{t.metric.name}" for n, t in parts.items())
    if name not in parts or metric != parts[name].metric.name:
        raise ZooError(f"--best {text}: expected a part's primary metric as TASK/METRIC ({choices})")
    return Metric(text, parts[name].metric.higher_is_better)


class MultiTask(Task):
    """Train one backbone on several tasks at once: one head, one data set and one metric per task."""

    name = "multitask"
    modality = ""
    pretrained_kinds = ("zoo",)
    train_defaults = dict(batch_size=16, lr=1e-3, weight_decay=0.1, eval_every=100)

    def __init__(self, parts: Mapping[str, Task] | None = None, data_for: Mapping[str, str] | None = None,
                 part_args: Mapping[str, argparse.Namespace] | None = None, sampling: str = "alternate",
                 best: Metric | None = None) -> None:
        self.parts = dict(parts or {})
        self.data_for = dict(data_for or {})
        self.part_args = dict(part_args or {})
        self.sampling = sampling
        if self.parts:
            self.modality = next(iter(self.parts.values())).modality
            self.metric = best or _best(None, self.parts)
            self.evaluation_pictures = tuple(f"{name}/{picture}" for name, task in self.parts.items()
                                             for picture in task.evaluation_pictures)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "MultiTask":
        """The multi-task run ``args`` describe, every flag checked before any data is read.

        ``args.data_for``, ``args.flags_for`` and ``args.weights`` become ``{task: value}`` for every part,
        so the run's ``args.json`` records what each part trained on (what `zoo eval TASK` reads back).
        """
        names = list(args.part or [])
        if len(names) < 2 or len(set(names)) < len(names):
            raise ZooError("--part: name two different tasks or more, e.g. --part sentiment --part text_generation")
        parts: dict[str, Task] = {}
        for name in names:
            try:
                parts[name] = zoo.get_task(name)
            except KeyError as err:
                raise ZooError(f"--part {name}: {err.args[0]}") from None
        modalities = {task.modality for task in parts.values()}
        if len(modalities) > 1:
            reads = ", ".join(f"{n} reads {t.modality}" for n, t in parts.items())
            raise ZooError(f"--part: {reads}; the parts share one backbone, so they must read one modality")
        modality = modalities.pop()
        _refuse_single_task_flags(args)
        if not args.backbone:
            raise ZooError(f"--backbone: name the {modality} backbone the parts share (every part's head must "
                           f"accept it, e.g. text_decoder_tiny for sentiment + text_generation)")
        try:
            backbone_modality = BACKBONES.meta(args.backbone).get("modality")
        except KeyError as err:
            raise ZooError(f"--backbone {args.backbone}: {err.args[0]}") from None
        if backbone_modality != modality:
            article = "an" if str(backbone_modality)[:1] in tuple("aeiou") else "a"
            raise ZooError(f"--backbone {args.backbone} is {article} {backbone_modality} backbone; the parts "
                           f"({', '.join(parts)}) read {modality}")
        data_for = {name: "builtin" for name in names}
        data_for.update(assignments(args.data_for, "--data-for", names, "SPEC"))
        for name, spec in data_for.items():
            try:
                parse_spec(spec)
            except ValueError as err:
                raise ZooError(f"--data-for {name}={spec}: {err}") from None
        flags_for = {name: "" for name in names}
        flags_for.update(assignments(args.flags_for, "--flags-for", names, "FLAGS"))
        part_args = {name: train_args(parts[name], shlex.split(flags)) for name, flags in flags_for.items()}
        args.data_for, args.flags_for, args.weights = data_for, flags_for, _weights(args.weights, names)
        return cls(parts, data_for, part_args, args.sampling, _best(args.best, parts))

    # ---- data -------------------------------------------------------------------------
    def datasets(self, spec: str, split: str) -> Parts:
        """Every part's ``split`` of its own data set (``--data-for``; ``spec`` plays no part)."""
        return Parts({name: task.datasets(self.data_for[name], split) for name, task in self.parts.items()})

    def for_model(self, dataset: Parts, model: torch.nn.Module) -> Parts:
        """Each part's data as its task trains on it with its head (text generation: token blocks)."""
        return Parts({name: task.for_model(dataset.sets[name], model.single_head(name))
                      for name, task in self.parts.items()})

    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        """Samples grouped by part, each group collated by its task: ``{"parts": {task: batch}}``."""
        collates = {name: task.make_collate(model.single_head(name), train) for name, task in self.parts.items()}

        def collate(samples: list[dict]) -> dict[str, Any]:
            groups: dict[str, list[dict]] = {}
            for sample in samples:
                groups.setdefault(sample[PART], []).append({k: v for k, v in sample.items() if k != PART})
            return {PARTS: {name: collates[name](group) for name, group in groups.items()}}

        return collate

    def batch_sampler(self, dataset: Parts, batch_size: int, generator: torch.Generator,
                      train: bool) -> list[list[int]]:
        """One epoch of batches as ``--sampling`` says (module docstring); indices into ``dataset``."""
        passes = {name: self._passes(name, dataset, batch_size, generator) for name in self.parts}
        if self.sampling == "proportional":
            batches = [next(order) for name, order in passes.items()
                       for _ in range(_batch_count(len(dataset.sets[name]), batch_size))]
            return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        steps = max(_batch_count(len(data), batch_size) for data in dataset.sets.values())
        return [[i for order in passes.values() for i in next(order)] for _ in range(steps)]

    def _passes(self, name: str, dataset: Parts, batch_size: int, generator: torch.Generator) -> Iterable[list[int]]:
        """Endless batches of part ``name`` (its task's training batches, else shuffled), pass after pass."""
        task, data, start = self.parts[name], dataset.sets[name], dataset.starts[name]
        while True:
            batches = task.batch_sampler(data, batch_size, generator, train=True)
            if batches is None:
                batches = ordered_chunks(torch.randperm(len(data), generator=generator).tolist(), batch_size)
            yield from ([start + i for i in batch] for batch in batches)

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The multi-task flags; the parts' own flags go through ``--flags-for``."""
        group = parser.add_argument_group("multi-task")
        group.add_argument("--part", action="append", metavar="TASK",
                           help="a task the backbone learns, with its own head and data set (two or more)")
        group.add_argument("--data-for", action="append", metavar="TASK=SPEC",
                           help="a part's training data SPEC (default: builtin; validation: its validation split)")
        group.add_argument("--flags-for", action="append", metavar="TASK=FLAGS",
                           help="a part's own `zoo train TASK` flags, e.g. sentiment='--max-len 64 --head-args "
                                "{\"pool\":\"mean\"}' (its defaults otherwise; the shared training flags and "
                                "--vocab-size are this command's)")
        group.add_argument("--weights", action="append", metavar="TASK=W",
                           help="a part's loss weight (default: 1 each); the loss is the weighted sum of the parts'")
        group.add_argument("--sampling", choices=SAMPLINGS, default="alternate", help=SAMPLING_HELP)
        group.add_argument("--best", default=None, metavar="TASK/METRIC",
                           help="the part's primary metric that picks best/ (default: the first part's)")
        group.add_argument("--vocab-size", type=VOCAB_SIZE, default=4096,
                           help="the one tokenizer's vocabulary, trained on every part's training texts")
        super().add_arguments(parser)

    def build_model(self, args: argparse.Namespace, train_set: Parts) -> MultiHeadModel:
        """One tokenizer on every part's texts, the ``--backbone``, and each part's head named after it."""
        texts = itertools.chain.from_iterable(task.texts(train_set.sets[name]) for name, task in self.parts.items())
        tokenizer = Tokenizer.train(texts, vocab_size=args.vocab_size)
        backbone = zoo.create_backbone(args.backbone, **{"vocab_size": tokenizer.vocab_size,
                                                         **(args.backbone_args or {})})
        preprocessing: dict[str, Any] = {}
        for name, task in self.parts.items():
            task.check_backbone(backbone, args.backbone)
            for key, value in task.preprocessing(self.part_args[name], backbone).items():
                if preprocessing.get(key, value) != value:
                    raise ZooError(f"--part {name}: its preprocessing {key}={value!r} differs from another part's "
                                   f"{preprocessing[key]!r}; set them alike with --flags-for")
                preprocessing[key] = value
        heads = {name: task.head_spec(self.part_args[name], train_set.sets[name]) for name, task in self.parts.items()}
        return MultiHeadModel(backbone, heads, head_weights=args.weights, tokenizer=tokenizer,
                              preprocessing=preprocessing)

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, model: torch.nn.Module, dataset: Parts, options: EvalOptions) -> dict[str, float]:
        """Every part's metrics by its own task, keyed ``<task>/<metric>``; its files in ``options.out/<task>``."""
        metrics: dict[str, float] = {}
        for name, task in self.parts.items():
            part_options = replace(options, out=Path(options.out) / name if options.out is not None else None)
            scored = task.evaluate(model.single_head(name), dataset.sets[name], part_options)
            metrics.update({f"{name}/{key}": value for key, value in scored.items()})
        return metrics

    def decoded_samples(self, model: torch.nn.Module, dataset: Parts, count: int = 3) -> list[str]:
        """Each part's decoded samples (generating parts), prefixed with the part's name."""
        return [f"{name}: {text}" for name, task in self.parts.items()
                for text in task.decoded_samples(model.single_head(name), dataset.sets[name], count)]


def _batch_count(size: int, batch_size: int) -> int:
    return -(-size // batch_size)


def _refuse_single_task_flags(args: argparse.Namespace) -> None:
    """Shared `zoo train` flags that name one task's data or head: each part has its own."""
    if args.data != "builtin" or args.val_data:
        raise ZooError("--data/--val-data: each part has its own data set; pass --data-for TASK=SPEC "
                       "(validation comes from each set's validation split)")
    if args.head or args.head_args:
        raise ZooError("--head/--head-args: each part uses its task's head; set one with "
                       "--flags-for TASK='--head NAME --head-args JSON'")
    if getattr(args, "distill_from", None):
        raise ZooError("--distill-from distils one task's model; a multi-task run does not take it")


def multitask_parser() -> ArgumentParser:
    """The parser of `zoo multitask`: the shared training flags and the multi-task ones."""
    parser = command_parser("train", MultiTask())
    parser.prog = PROG
    return parser


@COMMANDS.register("multitask", parser=multitask_parser)
def multitask_command(argv: list[str]) -> Path | None:
    """``zoo multitask --part TASK --part TASK ...``: check every flag, then train (``--print-config``:
    print the resolved flags instead; returns None)."""
    from tasks.engine.config import dump_config
    from tasks.engine.trainer import _resumed_args, _run_folder_of, train
    from zoo.progress import progress_enabled

    args = train_args(MultiTask(), argv, prog=PROG)
    if args.resume:     # the run's args.json fills what is not given again (the trainer merges it so too)
        args = _resumed_args(MultiTask(), args, _run_folder_of(Path(args.resume)))
    given = vars(args).copy()       # the flags as given (a config file takes them back), before from_args
    task = MultiTask.from_args(args)
    check_train_args(task, args)
    if args.print_config:
        print(dump_config(given, args.print_config), end="")
        return None
    with progress_enabled(not args.no_progress):
        return train(task, args)
