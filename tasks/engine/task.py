"""The Task object: everything the CLI, the trainer and the benchmark runner know about a task.

A task package registers one instance with ``@zoo.register_task(name)``. The CLI and the
runner never import task packages directly; they look tasks up in the registry. A task is
mostly declarations (modality, defaults, formats, built-in sets, metric, how long a sample
is); this base class turns them into reading by SPEC, preparation, modality checks and
length-bucketed batches. This module is a leaf of the engine: it imports no command and no
trainer (``zoo train|eval|predict`` are found in the ``COMMANDS`` registry).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch.utils.data import Dataset

from tasks.engine.batching import length_bucketed_batches
from tasks.engine.evaluation import EvalOptions
from tasks.engine.flags import generation_options
from tasks.engine.sets import BuiltinSet, Format, prepare_sets, read_spec
from zoo.errors import ZooError
from zoo.registry import BACKBONES, COMMANDS
from zoo.results import Generation, Result


@dataclass(frozen=True)
class Metric:
    """The task's primary metric: its key in the metrics dict and its direction."""

    name: str
    higher_is_better: bool

    def better(self, new: float, old: float | None) -> bool:
        """True when ``new`` improves on ``old`` (anything beats ``None``)."""
        if old is None:
            return True
        return new > old if self.higher_is_better else new < old


AIM = 1.05  # what a benchmark pair aims at unless it says otherwise: ours at least 1.05x the reference


@dataclass
class Workload:
    """One benchmark workload: ``step()`` does one batch of work on ``items`` items of ``unit``.

    ``step`` is built for the device it runs on; the harness (``tasks/engine/bench.py``) wraps
    each call in bf16 autocast when asked and in ``torch.inference_mode()`` for inference
    workloads, so a step does neither itself. ``model`` is the module whose parameters are
    counted (and converted to channels_last when asked). ``factory(batch_size)`` (optional)
    builds the same workload at another batch size, for the batch-size sweep. ``aim`` is the
    ratio (ours / reference) the pair aims at, and ``differs`` says how the two sides differ in
    kind ("" when they do the same work); both are read from our side of a pair, and the runner
    lists every row below its aim with them.
    """

    name: str
    unit: str                       # "images", "tokens", "sentences", "audio seconds"
    items: float                    # items processed by one step()
    step: Callable[[], Any]
    model: torch.nn.Module | None = None
    mode: str = "inference"         # "inference" | "train"
    batch_size: int = 1
    config: str = ""                # shapes, for the table
    factory: Callable[[int], "Workload"] | None = None
    aim: float = AIM
    differs: str = ""


@dataclass(frozen=True)
class Baseline:
    """The simplest honest model of a task and its metrics (the keys :meth:`Task.evaluate` returns)."""

    name: str                       # what it is, e.g. "tf-idf + logistic regression"
    metrics: Mapping[str, Any]


class Task:
    """Base class of every task. Subclasses declare the class attributes and override the hooks."""

    name: str = ""
    modality: str = ""                  # what backbones it reads: "text" | "image" | "audio"
    default_backbone: str = ""
    default_head: str = ""
    metric: Metric = Metric("loss", higher_is_better=False)
    generates: bool = False             # predictions are decoded sequences (generation flags apply)
    text_result: type[Result] = Generation   # the typed result of a generating task's text (to_result)
    train_defaults: ClassVar[Mapping[str, Any]] = {}            # `zoo train` flag defaults of this task
    head_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}   # head name -> its default arguments
    # `--head` names the task builds from several registry heads -> the registry head its --head-args configure
    composite_heads: ClassVar[Mapping[str, str]] = {}
    formats: ClassVar[Mapping[str, Format]] = {}                # --data NAME:PATH?k=v readers
    builtin_sets: ClassVar[Mapping[str, BuiltinSet]] = {}       # --data builtin:NAME
    quick_set: str = ""                 # the fastest built-in set (make demo, tests)
    bucket_batches: int = 50            # training batches cut from pools of this many, sorted by length
    demo_args: tuple[str, ...] = ()  # extra `zoo train` flags for the one-minute demo run
    evaluation_pictures: tuple[str, ...] = ()   # PNGs (globs) evaluate writes into options.out, logged as images
    explain_field: str = ""             # the sample field `zoo explain` takes as INPUT (a text or a file path)
    pretrained_kinds: tuple[str, ...] = ("zoo",)   # what --pretrained may name: kinds and weights families
                                                   # of tasks/engine/pretrained.py

    # ---- data -------------------------------------------------------------------------
    @property
    def quick_data(self) -> str:
        """The data SPEC of :attr:`quick_set`."""
        return f"builtin:{self.quick_set}"

    def prepare(self, names: list[str] | None = None, force: bool = False) -> None:
        """Build this task's built-in data sets into the cache (the only code that fetches)."""
        prepare_sets(self.name, self.builtin_sets, names, force)

    def datasets(self, spec: str, split: str) -> Dataset:
        """Samples of ``split`` ("train" | "validation" | "test" | "all") from a data SPEC."""
        return read_spec(self.name, spec, split, self.formats, self.builtin_sets)

    def for_model(self, dataset: Dataset, model: torch.nn.Module) -> Dataset:
        """``dataset`` as ``model`` trains on it (the trainer calls this once the model is built or
        loaded); most tasks: ``dataset`` itself (text generation: its documents cut into the model's
        token blocks)."""
        return dataset

    def decoded_samples(self, model: torch.nn.Module, dataset: Dataset, count: int = 3) -> list[str]:
        """A few of ``dataset``'s samples as ``model`` decodes them, one text each, for the run's logs
        (generating tasks); none here."""
        return []

    def explanation_inputs(self, dataset: Dataset, folder: Path, count: int = 2) -> list[str]:
        """The first ``count`` samples of ``dataset`` as `zoo explain` takes them (their :attr:`explain_field`),
        for the explanation pictures in the run's logs; a task whose samples hold no such input writes
        it into ``folder``. None when the task names no field."""
        if not self.explain_field:
            return []
        return [dataset[i][self.explain_field] for i in range(min(count, len(dataset)))]

    def sample_length(self, sample: dict) -> int | None:
        """How long a sample is, for length-bucketed training batches; None: no bucketing."""
        return None

    def sample_lengths(self, dataset: Dataset) -> list[int] | None:
        """Every sample's :meth:`sample_length`, or None (no bucketing). A task whose datasets know
        their lengths without loading a sample (audio durations from file headers) reads them here."""
        if len(dataset) == 0 or self.sample_length(dataset[0]) is None:
            return None
        return [self.sample_length(dataset[i]) for i in range(len(dataset))]

    def head_args(self, head: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """``head``'s declared defaults under the user's ``--head-args``."""
        return {**self.head_defaults.get(head, {}), **(given or {})}

    def backbone_args(self, name: str, defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The ``defaults`` that are fields of backbone ``name``'s registered config (timm backbones have
        none), under the user's ``--backbone-args`` ``given``."""
        fields = BACKBONES.meta(name).get("config", {})
        return {**{k: v for k, v in defaults.items() if k in fields}, **(given or {})}

    def check_backbone(self, backbone: torch.nn.Module, name: str) -> None:
        """Refuse a backbone of another modality than the task reads (``name`` for the message)."""
        if backbone.modality != self.modality:
            raise ZooError(f"backbone {name!r} is a {backbone.modality} backbone; {self.name} needs "
                           f"{'an' if self.modality[0] in 'aeiou' else 'a'} {self.modality} one")

    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        """A collate function turning sample dicts into the batch dict of docs/design.md."""
        raise NotImplementedError

    def batch_sampler(self, dataset: Dataset, batch_size: int, generator: torch.Generator,
                      train: bool) -> Iterable[list[int]] | None:
        """Training batches of similar :meth:`sample_lengths` (less padding), still shuffled; None
        (shuffled fixed-size batches) when the task measures no length, and for evaluation."""
        lengths = self.sample_lengths(dataset) if train else None
        if lengths is None:
            return None
        return length_bucketed_batches(lengths, batch_size, generator, self.bucket_batches)

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Task-specific command-line flags (model size, vocabulary, image size...) and the
        task's :attr:`train_defaults`; subclasses adding flags call this too."""
        parser.set_defaults(**self.train_defaults)

    def build_model(self, args: argparse.Namespace, train_set: Dataset) -> torch.nn.Module:
        """A new ZooModel for training (builds the tokenizer/labels from ``train_set`` if needed)."""
        raise NotImplementedError

    # ---- a part of a multi-task model (tasks/engine/multitask.py) ---------------------------
    def texts(self, dataset: Dataset) -> Iterable[str]:
        """The texts of ``dataset`` a tokenizer learns from (text tasks; a multi-task model trains one
        tokenizer on every part's)."""
        raise ZooError(f"{self.name} cannot be a part of a multi-task model: it says no texts to train a "
                       f"tokenizer on (parts so far: sentiment, text_generation)")

    def head_spec(self, args: argparse.Namespace, train_set: Dataset) -> dict[str, Any]:
        """``{"name", "args"}`` of the head :meth:`build_model` puts on the backbone (``args``: this
        task's parsed `zoo train` flags); a multi-task model builds each part's head from it."""
        raise ZooError(f"{self.name} cannot be a part of a multi-task model: it describes no head spec "
                       f"(parts so far: sentiment, text_generation)")

    def preprocessing(self, args: argparse.Namespace, backbone: torch.nn.Module) -> dict[str, Any]:
        """The ``model.preprocessing`` entries this task's collate and evaluation read (none by default);
        a multi-task model holds every part's."""
        return {}

    # ---- evaluation and prediction -----------------------------------------------------
    eval_batch_size: int = 32           # evaluate()'s batch size when the options give none

    def evaluate(self, model: torch.nn.Module, dataset: Dataset, options: EvalOptions) -> dict[str, float]:
        """The field's metrics on ``dataset`` (keys of docs/design.md); must include ``metric.name``.

        ``options`` say the batch size (None: :attr:`eval_batch_size`), precision, beams and the
        folder for evaluation files; the loop over batches is ``tasks.engine.evaluation.run_batches``.
        """
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, inputs: Sequence[Any], **options: Any) -> list[Any]:
        """Predictions people can read for raw inputs (texts, file paths)."""
        raise NotImplementedError

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Flags of `zoo predict` beyond the shared ones (``--stream``, ``--explain``, ``--out``...)."""

    def uses_all_heads(self, model: torch.nn.Module) -> bool:
        """Whether this task evaluates and predicts with every head of a several-head ``model`` (else
        `zoo eval|predict` take one, by ``--head``)."""
        return False

    def predict_options(self, args: argparse.Namespace) -> dict[str, Any]:
        """Keyword arguments for :meth:`predict` from parsed `zoo predict` flags (``stream=True``: the
        predictions are printed as they come, so `zoo predict` prints an empty line for each instead).

        By default: the generation flags' options when the task :attr:`generates`, and ``batch_size``
        when the task adds a ``--batch-size`` flag.
        """
        options = generation_options(args) if self.generates else {}
        return {**options, "batch_size": args.batch_size} if "batch_size" in vars(args) else options

    def to_result(self, prediction: Any) -> Result:
        """One of :meth:`predict`'s outputs as a typed result of :mod:`zoo.results` (what ``zoo.pipeline``
        returns): by default its :attr:`text_result` (a :class:`~zoo.results.Generation` unless the task
        says another) when the task :attr:`generates`."""
        if self.generates:
            return self.text_result(str(prediction))
        raise NotImplementedError(f"task {self.name!r} gives no typed result; override Task.to_result")

    def format_prediction(self, item: Any, prediction: Any) -> str:
        """One prediction as human-readable text for `zoo predict`: the output alone when the task
        :attr:`generates` (a transcript, a translation), else the input, a tab and the prediction."""
        return str(prediction) if self.generates else f"{item}\t{prediction}"

    # ---- commands (the CLI finds them in the COMMANDS registry; zoo never imports tasks) -----
    def command(self, name: str, argv: list[str]) -> Any:
        """Run ``zoo <name> <task> argv`` (train, eval or predict) from Python."""
        return COMMANDS.get(name)(self, argv)

    # ---- baseline -----------------------------------------------------------------------
    def baseline(self, train: Dataset, test: Dataset) -> Baseline | None:
        """The task's simplest honest baseline fit on ``train`` and scored on ``test`` by the metric code
        :meth:`evaluate` uses, so its ``metric.name`` compares directly with a model's (`zoo demo`).

        By default the ``baseline`` module beside the task's own (``tasks/<task>/baseline.py``), imported
        only now: its ``NAME`` and ``score(train, test) -> dict``; None when the package has none.
        """
        module = self.companion("baseline")
        if module is None:
            return None
        found = importlib.import_module(module)
        return Baseline(found.NAME, found.score(train, test))

    # ---- benchmark ----------------------------------------------------------------------
    def bench_workloads(self, device: torch.device, precision: str, quick: bool,
                        compile: bool = False) -> list[tuple[Workload, Workload | None]]:
        """Pairs (ours, reference) of the same work and shapes; reference None when absent.

        By default ``workloads(device, precision, quick, compile)`` of the ``bench`` module beside
        the task's own (``tasks/<task>/bench.py``), imported only now; none when there is no such module.
        """
        bench = self.companion("bench")
        return importlib.import_module(bench).workloads(device, precision, quick, compile) if bench else []

    def companion(self, name: str) -> str | None:
        """The dotted name of module ``name`` beside the task's own (``tasks/<task>/bench.py``,
        ``export.py``...), found without importing it; None when the package has none."""
        package = type(self).__module__.rpartition(".")[0]
        return f"{package}.{name}" if package and importlib.util.find_spec(f"{package}.{name}") else None
