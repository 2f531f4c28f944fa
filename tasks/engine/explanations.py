"""Explanations without the CLI: a task's ``explain.py`` and the pictures a training run logs at its end.

Kept apart from :mod:`tasks.engine.explain_command` (which imports the command helpers) so that the
trainer can use it without an import circle.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from zoo.errors import ZooError


def explain_module(task: Any) -> ModuleType:
    """``tasks/<task>/explain.py`` of ``task``; a task without one is refused in one line."""
    name = task.companion("explain")
    if name is None:
        raise ZooError(f"`zoo explain {task.name}`: this task has no explanations (no explain.py in its package)")
    return importlib.import_module(name)


def explain_samples(task: Any, model: Any, dataset: Any, out: Path, count: int = 2) -> list[Path]:
    """PNGs in ``out`` explaining ``model`` on the first ``count`` samples of ``dataset`` (the task's
    :meth:`~tasks.engine.task.Task.explanation_inputs`) with its default method, for a run's logs. A task
    without explanations gives none; any failure (captum missing, a model the method cannot explain)
    gives none and one warning line, since a picture for the logs must not end a finished run."""
    if task.companion("explain") is None:
        return []
    try:
        module = explain_module(task)
        inputs = task.explanation_inputs(dataset, Path(out) / "inputs", count)   # files it writes: apart
        results = module.explain_inputs(model, inputs, module.METHODS[0], Path(out)) if inputs else []
    except Exception as error:   # noqa: BLE001 - see the docstring: the run has finished, only its picture failed
        from tqdm import tqdm   # one line that keeps a progress bar intact

        tqdm.write(f"warning: no explanation pictures in the run's logs: {type(error).__name__}: "
                   f"{' '.join(str(error).split())}",
                   file=sys.stderr)
        return []
    return [Path(file) for result in results for file in result["files"] if file.endswith(".png")]
