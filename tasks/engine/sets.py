"""What a task declares about its data, and the reading and preparation every task shares.

A task lists its user formats (``--data NAME:PATH?key=value``) as :class:`Format` entries and
its built-in sets (``--data builtin:NAME``) as :class:`BuiltinSet` entries. :func:`read_spec`
turns a SPEC into the samples of one split, with one error style for an unknown format, an
unknown option, a missing path, an unknown set or split; :func:`prepare_sets` builds built-in
sets into the cache, each folder written atomically and stamped with its set's version so a
changed preparation rebuilds instead of reading stale files.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from torch.utils.data import Dataset

from tasks.engine.data import DataSpec, build_atomically, builtin_dir, is_prepared, parse_spec
from zoo.errors import ZooError
from zoo.progress import progress_bar
from zoo.storage import data_root

BUILTIN_SPLITS = ("train", "validation", "test")
DEFAULT_SET = "default"     # the set plain ``builtin`` names


@dataclass(frozen=True)
class Format:
    """A user format: ``read(spec, split)`` gives the samples of ``split``; ``options`` are the
    ``?key=value`` keys it accepts (anything else is refused before reading)."""

    read: Callable[[DataSpec, str], Dataset]
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuiltinSet:
    """A built-in set: ``build(folder)`` writes it into an empty folder (the only code that
    fetches) and returns a one-line summary; ``read(folder, split)`` loads one split of the
    prepared folder; ``version`` stamps the folder."""

    summary: str
    build: Callable[[Path], str]
    read: Callable[[Path, str], Dataset]
    version: str = "1"


def read_spec(task: str, spec: str, split: str, formats: Mapping[str, Format],
              builtins: Mapping[str, BuiltinSet]) -> Dataset:
    """The samples of ``split`` of a data SPEC (``builtin``, ``builtin:NAME`` or ``FORMAT:PATH?k=v``)."""
    parsed = parse_spec(spec)
    if parsed.is_builtin:
        name = parsed.path or DEFAULT_SET
        entry = builtin_entry(task, name, builtins)
        if split not in BUILTIN_SPLITS:
            raise ZooError(f"built-in {task} set {name!r} has the splits {list(BUILTIN_SPLITS)}, not {split!r}")
        return entry.read(builtin_dir(task, name, entry.version), split)
    if parsed.format not in formats:
        listed = ", ".join(["builtin", *(f"{name}:PATH" for name in formats)])
        raise ZooError(f"--data {spec!r}: unknown format {parsed.format!r}; {task} reads {listed}")
    entry = formats[parsed.format]
    unknown = sorted(set(parsed.options) - set(entry.options))
    if unknown:
        takes = f"takes {sorted(entry.options)}" if entry.options else "takes no options"
        raise ZooError(f"--data {spec!r}: unknown option(s) {unknown}; {parsed.format} {takes}")
    if not parsed.path:
        raise ZooError(f"--data {spec!r}: no PATH after '{parsed.format}:'")
    return entry.read(parsed, split)


def builtin_entry(task: str, name: str, builtins: Mapping[str, BuiltinSet]) -> BuiltinSet:
    """The declared set ``name``; an unknown name raises listing the task's sets."""
    if name not in builtins:
        raise ZooError(f"unknown built-in {task} set {name!r}; choose from {sorted(builtins)}")
    return builtins[name]


def prepare_sets(task: str, builtins: Mapping[str, BuiltinSet], names: Sequence[str] | None = None,
                 force: bool = False) -> None:
    """Build the named built-in sets (all when None) into ``data_root()/TASK/NAME``.

    A set already prepared at its version is skipped unless ``force``; names are checked
    before any set is built.
    """
    chosen = list(builtins) if names is None else list(names)
    for name in chosen:
        builtin_entry(task, name, builtins)
    bar = progress_bar(chosen, unit="set")
    for name in bar:
        bar.set_description(f"{task}:{name}")
        entry = builtins[name]
        folder = data_root() / task / name
        if is_prepared(task, name, entry.version) and not force:
            bar.write(f"{task}:{name}: already prepared in {folder}")
            continue
        start = time.perf_counter()
        with build_atomically(task, name, entry.version) as target:
            summary = entry.build(target)
        bar.write(f"{task}:{name}: {summary} in {time.perf_counter() - start:.1f} s -> {folder}")
        sys.stdout.flush()      # each set's line as it finishes, also through a pipe
