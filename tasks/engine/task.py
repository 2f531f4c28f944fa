"""The Task object: everything the CLI, the trainer and the benchmark runner know about a task.

A task package registers one instance with ``@zoo.register_task(name)``. The CLI and the
runner never import task packages directly; they look tasks up in the registry.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils.data import Dataset


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


@dataclass
class Workload:
    """One benchmark workload: ``step()`` does one batch of work on ``items`` items of ``unit``.

    ``step`` is built for the device it runs on; the harness (``tasks/engine/bench.py``) wraps
    each call in bf16 autocast when asked and in ``torch.inference_mode()`` for inference
    workloads, so a step does neither itself. ``model`` is the module whose parameters are
    counted (and converted to channels_last when asked). ``factory(batch_size)`` (optional)
    builds the same workload at another batch size, for the batch-size sweep.
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


class Task:
    """Base class of every task. Subclasses set the class attributes and override the hooks."""

    name: str = ""
    default_backbone: str = ""
    default_head: str = ""
    metric: Metric = Metric("loss", higher_is_better=False)
    demo_args: tuple[str, ...] = ()  # extra `zoo train` flags for the one-minute demo run
    pretrained_kinds: tuple[str, ...] = ("zoo",)   # what --pretrained may name: kinds and weights families
                                                   # of tasks/engine/pretrained.py
    data_module: ModuleType          # tasks/<task>/data.py: prepare(names, force), read(spec, split), QUICK_SET

    # ---- data -------------------------------------------------------------------------
    @property
    def quick_set(self) -> str:
        """The fastest built-in set (make demo, tests): the data module's ``QUICK_SET``."""
        return self.data_module.QUICK_SET

    @property
    def quick_data(self) -> str:
        """The data SPEC of :attr:`quick_set`."""
        return f"builtin:{self.quick_set}"

    def prepare(self, names: list[str] | None = None, force: bool = False) -> None:
        """Build this task's built-in data sets into the cache (the only code that fetches)."""
        self.data_module.prepare(names, force)

    def datasets(self, spec: str, split: str) -> Dataset:
        """Samples of ``split`` ("train" | "validation" | "test" | "all") from a data SPEC."""
        return self.data_module.read(spec, split)

    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        """A collate function turning sample dicts into the batch dict of DESIGN.md."""
        raise NotImplementedError

    def batch_sampler(self, dataset: Dataset, batch_size: int, generator: torch.Generator,
                      train: bool) -> Iterable[list[int]] | None:
        """Optional custom batching (e.g. by length); None means shuffled fixed-size batches."""
        return None

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Task-specific command-line flags (model size, vocabulary, image size...)."""

    def build_model(self, args: argparse.Namespace, train_set: Dataset) -> torch.nn.Module:
        """A new ZooModel for training (builds the tokenizer/labels from ``train_set`` if needed)."""
        raise NotImplementedError

    # ---- evaluation and prediction -----------------------------------------------------
    def evaluate(self, model: torch.nn.Module, dataset: Dataset, args: argparse.Namespace) -> dict[str, float]:
        """The field's metrics on ``dataset`` (keys of DESIGN.md); must include ``metric.name``."""
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, inputs: Sequence[Any], **options: Any) -> list[Any]:
        """Predictions people can read for raw inputs (texts, file paths)."""
        raise NotImplementedError

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Flags of `zoo predict` beyond the shared ones (``--stream``, ``--explain``, ``--out``...)."""

    def predict_options(self, args: argparse.Namespace) -> dict[str, Any]:
        """Keyword arguments for :meth:`predict` from parsed `zoo predict` flags."""
        return {}

    def format_prediction(self, item: Any, prediction: Any) -> str:
        """One prediction as human-readable text for `zoo predict`."""
        return f"{item}\t{prediction}"

    # ---- commands (the CLI calls these; zoo never imports tasks) ----------------------------
    def command(self, name: str, argv: list[str]) -> Any:
        """Run ``zoo <name> <task> argv``: train, eval or predict."""
        from tasks.engine import commands

        handlers = {"train": commands.train_command, "eval": commands.eval_command,
                    "predict": commands.predict_command}
        if name not in handlers:
            raise ValueError(f"unknown command {name!r}; expected one of {sorted(handlers)}")
        return handlers[name](self, argv)

    @staticmethod
    def shared_parser(name: str) -> argparse.ArgumentParser:
        """The parser of ``zoo <name> TASK`` with only the flags every task shares (``zoo train --help``)."""
        from tasks.engine import commands

        return commands.command_parser(name)

    # ---- benchmark ----------------------------------------------------------------------
    def bench_workloads(self, device: torch.device, precision: str, quick: bool,
                        compile: bool = False) -> list[tuple[Workload, Workload | None]]:
        """Pairs (ours, reference) of the same work and shapes; reference None when absent.

        By default ``workloads(device, precision, quick, compile)`` of the ``bench`` module beside
        the task's own (``tasks/<task>/bench.py``), imported only now; none when there is no such module.
        """
        package = type(self).__module__.rpartition(".")[0]
        if not package or importlib.util.find_spec(f"{package}.bench") is None:
            return []
        return importlib.import_module(f"{package}.bench").workloads(device, precision, quick, compile)
