"""``zoo.pipeline(task, checkpoint)``: raw inputs in, typed results (:mod:`zoo.results`) out, as ``zoo predict``.

A pipeline is the `zoo predict` command without the command line: the task's own ``predict``
(batched, on the model's device), its default options (the defaults of `zoo predict TASK`'s
flags) and the typed result each of its predictions becomes (``Task.to_result``). ``zoo`` imports
no task: the task comes from the ``TASKS`` registry and the predict command's pieces from the
``COMMANDS`` registry, both filled by the ``zoo.plugins`` entry points on first use.

>>> classify = zoo.pipeline("sentiment", "runs/sentiment")          # a run folder: its best checkpoint
>>> classify("a moving, funny film").label                          # one input, one Classification
>>> [r.to_dict() for r in classify(["dull", "superb"], batch_size=2)]   # a list in, a list out
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from zoo.errors import ZooError
from zoo.registry import COMMANDS, TASKS
from zoo.results import Result

# what each modality's pipeline reads, and how to say it in an error
INPUT_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "text": ((str,), "texts (str)"),
    "image": ((str, Path, Image.Image, np.ndarray, torch.Tensor),
              "image file paths, PIL images, (H, W, 3) uint8 arrays or (3, H, W) tensors"),
    "audio": ((str, Path, np.ndarray, torch.Tensor), "audio file paths or 1-D sample arrays (sample_rate=... Hz)"),
}


class Pipeline:
    """``pipeline(inputs, **options)``: one input gives one result, a list gives a list (see :func:`pipeline`)."""

    def __init__(self, task: Any, predict: Any, model: torch.nn.Module | None, options: dict[str, Any]) -> None:
        self.task, self.model, self.options = task, model, options
        self._predict = predict

    def __call__(self, inputs: Any, **options: Any) -> Result | list[Result]:
        """Typed results of ``inputs`` (one item or a list); ``options`` override the pipeline's for this call."""
        many = isinstance(inputs, (list, tuple))
        items = list(inputs) if many else [inputs]
        check_inputs(self.task, items)
        predictions = self._predict(items, **self.task_options(options))
        results = [self.task.to_result(prediction) for prediction in predictions]
        return results if many else results[0]

    def task_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The pipeline's options with ``options`` on top, checked against what the task's predict takes."""
        if not options:
            return self.options
        return COMMANDS.meta("predict")["options"](self.task, {**self.options, **_our_names(self.task, options)})

    def __repr__(self) -> str:
        device = next(self.model.parameters()).device if self.model is not None else "onnxruntime"
        return f"Pipeline(task={self.task.name!r}, device={str(device)!r}, options={self.options})"


def pipeline(task: str, checkpoint_or_run: str | Path, device: str | torch.device | None = None,
             batch_size: int | None = None, runtime: str = "torch", **options: Any) -> Pipeline:
    """A callable from raw inputs to typed results, exactly as ``zoo predict TASK --checkpoint DIR`` predicts.

    - ``task``: a registered task name (``zoo list tasks``);
    - ``checkpoint_or_run``: a run folder (its ``best`` checkpoint) or a model folder; with
      ``runtime="onnx"`` a folder written by ``zoo export TASK --format onnx`` (the encoder tasks);
    - ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``; None: a GPU when torch sees one;
    - ``batch_size``: inputs predicted together (None: the task's default);
    - ``options``: the task's prediction options, as its `zoo predict` flags name them in snake case
      (``top_k`` for ``--top-classes``... see each task's ``predict``): ``score_threshold``,
      ``max_new_tokens``, ``beams`` (or ``num_beams``), ``temperature``, ``do_sample``, ``sample_rate``...

    Inputs: texts for the text tasks; image paths, PIL images, (H, W, 3) uint8 arrays or (3, H, W)
    tensors for the image tasks; audio paths or 1-D sample arrays (at ``sample_rate``, default 16 kHz)
    for ASR. Results: :class:`~zoo.results.Classification` (sentiment, image classification),
    :class:`~zoo.results.Detection`, :class:`~zoo.results.Transcription`, :class:`~zoo.results.Generation`
    (text generation: the continuation), :class:`~zoo.results.Translation`; each has ``to_dict()``.
    """
    try:
        found = TASKS.create(task)
    except KeyError as err:
        raise ZooError(f"zoo.pipeline: {err.args[0]}") from None
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ZooError(f"zoo.pipeline: batch_size={batch_size!r}; pass a whole number >= 1 (or None: the task's)")
    if runtime == "onnx" and device not in (None, "cpu"):
        raise ZooError(f"zoo.pipeline: device={str(device)!r} with runtime='onnx'; the ONNX export runs on the "
                       f"CPU under onnxruntime, so leave device out or use runtime='torch'")
    given = _our_names(found, options) | ({} if batch_size is None else {"batch_size": batch_size})
    command = COMMANDS.meta("predict")
    checked = command["options"](found, given)        # unknown options fail before the model loads
    predict, model = command["predictor"](found, checkpoint_or_run, "auto" if device is None else str(device), runtime,
                                          "checkpoint_or_run")
    return Pipeline(found, predict, model, checked)


def _our_names(task: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Generation options under transformers' names (``num_beams``, ``do_sample``) renamed for a generating task."""
    if not task.generates:
        return dict(options)
    from zoo.generation import transformers_options

    return transformers_options(dict(options))


def check_inputs(task: Any, items: Sequence[Any]) -> None:
    """Refuse, in one line naming the input's number and type, an input the task's modality does not read."""
    if not items:
        raise ZooError(f"zoo.pipeline({task.name!r}): no inputs; pass one input or a list of them")
    types, described = INPUT_TYPES[task.modality]
    for number, item in enumerate(items, 1):
        if not isinstance(item, types):
            raise ZooError(f"zoo.pipeline({task.name!r}): input {number} is a {type(item).__name__}; "
                           f"{task.name} reads {described}")
