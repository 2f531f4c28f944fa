"""Exported models: a model as an ONNX graph or a ``torch.export`` program beside an ``export.json``
sidecar, and the runtime side of ``zoo predict TASK --runtime onnx --checkpoint EXPORT_DIR``.

A task exports when it has a module ``tasks/<task>/export.py`` (found by name, like ``bench``) with

- ``graph(model) -> Graph``: the module to trace (named tensors in, a dict of named tensors out),
  example inputs and the names of the axes that stay dynamic (inputs and outputs); or a dict
  ``{part: Graph}`` of several graphs (generation: an encoder or prefill graph and a decoder-step graph,
  each in ``<part>.onnx``, described under the sidecar's ``graphs``);
- ``predict(exported: Exported, inputs, **options) -> list``: the predictions of ``task.predict`` (same
  format, same decisions) from the exported graph, reading inputs with the task's own preprocessing.
- ``stepper(exported, inputs, mask, max_new_tokens)`` (several-graph exports): the
  :class:`~tasks.engine.onnx_decode.Stepper` over its graphs for (B, T) numpy ``inputs``/``mask``, which
  int8 calibration and the deploy suite drive with the numpy decoding loops.

ONNX goes through ``torch.onnx.export(..., dynamo=True)`` and runs under onnxruntime (the ``export``
extra); ``torch-export`` writes ``torch.export.save``'s ``.pt2``. The sidecar holds the task, format,
inputs, outputs, dynamic axes, the model's ``preprocessing``, its labels, the tokenizer file (copied
beside the graph), the opset and the zoo version: everything a prediction needs besides the graph.
"""
from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.progress import working
from zoo.registry import TASKS
from zoo.tokenizer import BaseTokenizer, stored_tokenizer

FILES = {"onnx": "model.onnx", "torch-export": "model.pt2"}     # --format -> the artefact's file name
SIDECAR = "export.json"
MAIN = "model"          # the part name of a single-graph export (its file: model.onnx / model.pt2)
_OPERATION = re.compile(r"(?:aten|torchvision|prims)(?:::|\.)[A-Za-z_][\w.]*")
_SUMMARY = re.compile(r"<class '[\w.]+'>: (.+)")
_CALL = re.compile(r'raised this error:\s*File "([^"]+)", line (\d+), in \w+\s*\n\s*(.+)')   # torch.export's


@dataclass
class Graph:
    """What a task traces: ``module(**inputs)`` returns a dict of tensors named as in ``axes``.

    ``axes``: tensor name -> {axis: name} of the axes left dynamic (inputs: given to the exporter;
    outputs: recorded in the sidecar). ``extra``: sidecar fields the task's ``predict`` reads.
    """

    module: nn.Module
    inputs: dict[str, torch.Tensor]
    axes: dict[str, dict[int, str]]
    extra: dict[str, Any] = field(default_factory=dict)


class ModelPart(nn.Module):
    """A module computing part of ``model`` (its ``forward``: what one exported graph runs, e.g. the encoder)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


class Traced(nn.Module):
    """A ZooModel as ``forward(inputs, mask=None) -> {name: tensor}``: ``outputs`` picks (or computes)
    the exported tensors from the model's output dict."""

    def __init__(self, model: nn.Module, outputs: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.outputs(self.model({"inputs": inputs, "mask": mask}))


# ---- finding a task's export module ----------------------------------------------------------------------

def exporting_tasks() -> list[str]:
    """The registered tasks that have a ``tasks/<task>/export.py``."""
    return [name for name in TASKS.list() if zoo.get_task(name).companion("export") is not None]


def task_module(task: Any) -> ModuleType:
    """The task's export module; a task without one is refused in one line listing those that export."""
    name = task.companion("export")
    if name is None:
        raise ZooError(f"zoo export {task.name}: this task has no export (tasks that export: "
                       f"{', '.join(exporting_tasks())})")
    return importlib.import_module(name)


# ---- export --------------------------------------------------------------------------------------------

def write_export(task: Any, model: nn.Module, fmt: str, out: Path, optimize: bool = True) -> Path:
    """Trace ``model`` (loaded, on the CPU) as ``fmt`` into the new folder ``out`` beside its sidecar."""
    traced = task_module(task).graph(model)
    graphs = traced if isinstance(traced, dict) else {MAIN: traced}
    out.mkdir(parents=True, exist_ok=True)
    described, opset = {}, None
    for part, graph in graphs.items():
        graph.module.eval()
        file = f"{part}{Path(FILES[fmt]).suffix}"
        with torch.no_grad(), working(f"exporting {task.name} as {fmt}" + (f" ({part})" if len(graphs) > 1 else "")):
            expected = graph.module(**graph.inputs)
            opset = _trace(graph, list(expected), fmt, out / file, optimize, model)
        described[part] = {"file": file, **_describe(graph, expected)}
    layout = described[MAIN] if MAIN in described else {"graphs": described}   # one graph's file, inputs... or each's
    sidecar = {"task": task.name, "format": fmt, **layout, "zoo_version": zoo.__version__,
               "torch_version": torch.__version__, "opset": opset,
               "backbone": model.backbone.zoo_spec["name"], "head": model.head.zoo_spec["name"],
               "preprocessing": model.preprocessing, "labels": getattr(model.head, "labels", None),
               "tokenizer": None, "tokenizer_kind": None,
               **{key: value for graph in graphs.values() for key, value in graph.extra.items()}}
    if model.tokenizer is not None:
        model.tokenizer.save(out / model.tokenizer.file)
        sidecar.update(tokenizer=model.tokenizer.file, tokenizer_kind=model.tokenizer.kind)
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=2, default=list), encoding="utf-8")
    return out


def _trace(graph: Graph, outputs: list[str], fmt: str, path: Path, optimize: bool, model: nn.Module) -> int | None:
    """Export ``graph`` to ``path``; the opset for ONNX. A failure names the part, the operation and the way out."""
    dims = {name: {axis: torch.export.Dim.DYNAMIC for axis in graph.axes.get(name, {})} or None
            for name in graph.inputs}
    try:
        if fmt == "torch-export":
            torch.export.save(torch.export.export(graph.module, (), kwargs=graph.inputs, dynamic_shapes=dims), path)
            return None
        program = torch.onnx.export(graph.module, (), kwargs=graph.inputs, dynamic_shapes=dims, dynamo=True,
                                    input_names=list(graph.inputs), output_names=outputs, optimize=optimize,
                                    verbose=False)
    except Exception as err:  # noqa: BLE001  the exporters raise anything; the user gets one actionable line
        raise ZooError(export_failure(model, fmt, err)) from None
    program.save(str(path))
    return int(program.model.opset_imports.get("", 0)) or None


def export_failure(model: nn.Module, fmt: str, err: BaseException) -> str:
    """One line: which backbone/head failed to export as ``fmt``, the blocking operation, what to use instead."""
    text = str(err)
    operation, call, summary = _OPERATION.search(text), _CALL.search(text), _SUMMARY.search(text)
    if operation:
        reason = f"operation {operation.group(0)}"
    elif call:
        reason = f"{Path(call.group(1)).name}:{call.group(2)} `{call.group(3).strip()}` (data-dependent Python code)"
    else:
        reason = summary.group(1) if summary else one_line(err)
    parts = ", ".join(f"{part} {getattr(model, part).zoo_spec['name']!r}" for part in ("backbone", "head")
                      if hasattr(getattr(model, part, None), "zoo_spec"))
    instead = ("use --format torch-export, or another head/backbone" if fmt == "onnx"
               else "keep the checkpoint and `zoo predict` it with --runtime torch, or use another head/backbone")
    return f"cannot export {parts} as {fmt}: {type(err).__name__} at {reason}; {instead}"


def one_line(err: BaseException) -> str:
    """An exception's message on one line, cut at 300 characters."""
    return " ".join(str(err).split())[:300] or type(err).__name__


def _describe(graph: Graph, expected: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A graph's inputs and outputs (name, dtype, shape with dynamic axes named) and its dynamic axes."""
    def tensor(name: str, value: torch.Tensor) -> dict[str, Any]:
        axes = graph.axes.get(name, {})
        return {"name": name, "dtype": str(value.dtype).removeprefix("torch."),
                "shape": [axes.get(i, size) for i, size in enumerate(value.shape)]}

    return {"inputs": [tensor(n, t) for n, t in graph.inputs.items()],
            "outputs": [tensor(n, t) for n, t in expected.items()],
            "dynamic_axes": {n: {str(a): v for a, v in axes.items()} for n, axes in graph.axes.items()}}


# ---- running an export ---------------------------------------------------------------------------------

class Runner:
    """One graph of an export: ``run(**arrays) -> {output: array}`` through onnxruntime (ONNX) or the
    loaded ``torch.export`` program (``.pt2``)."""

    def __init__(self, path: Path, fmt: str, outputs: list[str]) -> None:
        self.outputs = outputs
        if fmt == "onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3      # errors only: not the optimiser's notes on constant folding
            options.intra_op_num_threads = torch.get_num_threads()     # as many as PyTorch: fair comparisons
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        else:
            self._program = torch.export.load(str(path)).module()
            self._session = None

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs for named numpy inputs (as the sidecar lists them)."""
        if self._session is not None:
            return dict(zip(self.outputs, self._session.run(self.outputs, inputs)))
        with torch.no_grad():
            result = self._program(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()})
        return {name: result[name].numpy() for name in self.outputs}


class Exported:
    """An export folder: its ``sidecar``, ``run(**arrays) -> {output: array}`` of its graph, and
    ``graph(part)`` the :class:`Runner` of one part of a several-graph export (generation)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / SIDECAR
        if not path.is_file():
            raise ZooError(f"--checkpoint {folder}: no {SIDECAR}; pass a folder written by `zoo export`")
        self.sidecar: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        graphs = self.sidecar.get("graphs") or {MAIN: self.sidecar}
        self._runners = {part: Runner(self.folder / layout["file"], self.sidecar["format"],
                                      [o["name"] for o in layout["outputs"]]) for part, layout in graphs.items()}

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.sidecar["preprocessing"]

    def tokenizer(self) -> BaseTokenizer:
        """The tokenizer copied beside the graph."""
        if not self.sidecar.get("tokenizer"):
            raise ZooError(f"{self.folder / SIDECAR}: this export stores no tokenizer")
        return stored_tokenizer(self.folder, self.sidecar)

    def graph(self, part: str) -> Runner:
        """The graph ``part`` of this export (``model`` for a single-graph export)."""
        if part not in self._runners:
            raise ZooError(f"{self.folder / SIDECAR}: this export has no graph {part!r} (it has "
                           f"{', '.join(self._runners)}); re-export it with this version of `zoo export`")
        return self._runners[part]

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs of a single-graph export for named numpy inputs (as the sidecar's ``inputs`` list them)."""
        return self.graph(MAIN).run(**inputs)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float32 as the PyTorch heads compute it."""
    shifted = np.exp(logits.astype(np.float32) - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def exported_predictor(task: Any, folder: str | Path) -> Callable[..., list[Any]]:
    """``predict(inputs, **options)``: ``task.predict``'s output from the ONNX export in ``folder``, its
    session opened once (``zoo predict TASK --runtime onnx``, ``zoo.pipeline(..., runtime="onnx")``)."""
    module = task_module(task)
    exported = Exported(folder)
    owner, fmt = exported.sidecar.get("task"), exported.sidecar.get("format")
    if owner != task.name:
        raise ZooError(f"--checkpoint {folder} is a {owner} export; use `zoo predict {owner}`")
    if fmt != "onnx":
        raise ZooError(f"--checkpoint {folder} holds a {fmt} program, not ONNX; re-export with --format onnx")
    return lambda inputs, **options: module.predict(exported, inputs, **options)


def predict_exported(task: Any, folder: str, inputs: Sequence[Any], **options: Any) -> list[Any]:
    """``zoo predict TASK --runtime onnx --checkpoint EXPORT_DIR``: ``task.predict``'s output from the export."""
    return exported_predictor(task, folder)(inputs, **options)


def refuse_option(flag: str, given: bool) -> None:
    """Refuse a predict option the exported graph cannot honour."""
    if given:
        raise ZooError(f"{flag} needs the PyTorch model; drop it or use --runtime torch with the checkpoint")
