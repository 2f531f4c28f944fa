"""Int8 ONNX exports: every graph of ``zoo export`` quantized by onnxruntime.

``dynamic``: ``quantize_dynamic`` (int8 weights, activations quantized at run time: MatMulInteger,
ConvInteger). ``static``: ``quantize_static`` in QDQ form with activation ranges measured by a
:class:`FeedReader` over inputs of the task's own data: a single graph reads the batches (the task's
collate, the graph's input names); the graphs of a generating export (prefill or encoder + decoder
step) read what the fp32 graphs were fed while the numpy greedy loop decoded :data:`CALIBRATION_STEPS`
new tokens from each batch (:func:`decode_feeds`), so the decoder step is calibrated on real caches.
Both quantize only the weighted operations (:data:`OPERATIONS`), weights per output channel, and
leave out an operation fed by a fixed buffer of the model (the ASR front end's mel filterbank is a
MatMul whose constant is no trained weight); norms, softmax and the additions stay float, which
kept the tiny test models' decisions where quantizing every operation did not.

The folder is an export folder like ``zoo export``'s (``zoo predict --runtime onnx`` reads it: same
graph files, input and output names), its sidecar saying ``quantization``.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from torch import nn

from tasks.engine.export import MAIN, SIDECAR, Exported, task_module, write_export
from tasks.engine.onnx_decode import greedy, loop_inputs

OPERATIONS = ("MatMul", "Gemm", "Conv", "Gather")     # the operations that hold weights
CALIBRATION_STEPS = 16                                # new tokens decoded per calibration batch
Feeds = dict[str, np.ndarray]


class FeedReader(CalibrationDataReader):
    """Calibration inputs for onnxruntime: named numpy arrays, one dict per run of the graph."""

    def __init__(self, feeds: list[Feeds]) -> None:
        self._feeds: Iterator[Feeds] = iter(feeds)

    def get_next(self) -> Feeds | None:
        return next(self._feeds, None)


def decode_feeds(task: Any, exported: Exported, batches: list[dict[str, Any]],
                 steps: int = CALIBRATION_STEPS) -> dict[str, list[Feeds]]:
    """Per graph part, the inputs it ran on while the task's stepper greedily decoded ``steps`` new tokens
    (no stop token: every step runs) from each batch over the graphs of ``exported``; a language model's
    prompts are cut to leave ``steps`` positions under its position limit."""
    recorded: dict[str, list[Feeds]] = {part: [] for part in exported.sidecar["graphs"]}
    for part, feeds in recorded.items():
        runner = exported.graph(part)
        runner.run = _recording(runner.run, feeds)       # the steppers reach the graphs through these runners
    limit = exported.sidecar.get("max_positions")
    for batch in batches:
        inputs, mask = loop_inputs(batch, None if limit is None else limit - steps)
        greedy(task_module(task).stepper(exported, inputs, mask, steps), steps, ())
    return recorded


def _recording(run: Callable[..., Feeds], feeds: list[Feeds]) -> Callable[..., Feeds]:
    def recorded(**inputs: np.ndarray) -> Feeds:
        feeds.append(dict(inputs))
        return run(**inputs)

    return recorded


def fixed_inputs(model: nn.Module) -> set[str]:
    """The names a buffer of ``model`` has as a graph initializer: under a traced wrapper's ``model.``
    (single graph, prefill, encoder) or as the model's own (a decoder step that holds ``head``)."""
    names = [name for name, _ in model.named_buffers()]
    return {f"model.{name}" for name in names} | set(names)


def write_int8_export(task: Any, model: nn.Module, method: str, batches: list[dict[str, Any]] | None,
                      out: Path) -> Path:
    """Export ``model`` (float, CPU) as ONNX and quantize each of its graphs by ``method`` into ``out``
    beside the sidecar."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = write_export(task, model, "onnx", Path(tmp) / "fp32", optimize=True)   # folds the weight transposes
        exported = Exported(fp32)
        layouts = exported.sidecar.get("graphs") or {MAIN: exported.sidecar}
        if method == "static" and "graphs" in exported.sidecar:
            feeds = decode_feeds(task, exported, batches or [])
        elif method == "static":      # one graph: each batch's tensors named as the inputs it reads (not an unused one)
            inputs = onnx.load(str(fp32 / exported.sidecar["file"]), load_external_data=False).graph.input
            feeds = {MAIN: [{i.name: batch[i.name].cpu().numpy() for i in inputs} for batch in batches or []]}
        out.mkdir(parents=True, exist_ok=True)
        for part, layout in layouts.items():
            _quantize_graph(fp32 / layout["file"], out / layout["file"], Path(tmp) / f"plain-{part}.onnx",
                            method, fixed_inputs(model), feeds[part] if method == "static" else [])
        files = {layout["file"] for layout in layouts.values()}
        for item in fp32.iterdir():       # the sidecar and the tokenizer
            if item.name not in files:
                shutil.copy2(item, out / item.name)
    sidecar = json.loads((out / SIDECAR).read_text(encoding="utf-8"))
    sidecar["quantization"] = {"method": method, "operations": list(OPERATIONS), "weights": "int8 per channel",
                               "activations": "uint8, calibrated" if method == "static" else "int8 at run time",
                               "onnxruntime_version": onnxruntime.__version__, "graphs": list(layouts),
                               "calibration_batches": len(batches or []),
                               "calibration_runs": {part: len(f) for part, f in feeds.items()}
                               if method == "static" else {}}
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    return out


def _untie(graph: onnx.ModelProto) -> None:
    """Give each Gather its own copy of a table that a MatMul/Gemm also reads (a tied embedding and output
    projection): onnxruntime quantizes a shared initializer once, per channel along one consumer's axis,
    which leaves the other reading it transposed. Two int8 copies are still half the fp32 table."""
    tables = {tensor.name: tensor for tensor in graph.graph.initializer}
    readers: dict[str, set[str]] = {}
    for node in graph.graph.node:
        for name in node.input:
            if name in tables:
                readers.setdefault(name, set()).add(node.op_type)
    for node in graph.graph.node:
        name = node.input[0] if node.op_type == "Gather" and node.input else None
        if name in tables and readers[name] & {"MatMul", "Gemm"}:
            copy = onnx.TensorProto()
            copy.CopyFrom(tables[name])
            copy.name = f"{name}.gathered"
            if copy.name not in tables:
                graph.graph.initializer.append(copy)
                tables[copy.name] = copy
            node.input[0] = copy.name


def _quantize_graph(source: Path, dest: Path, plain: Path, method: str, fixed: set[str], feeds: list[Feeds]) -> None:
    """Quantize the graph in ``source`` into ``dest`` (``plain``: a scratch copy without traced shapes)."""
    graph = onnx.load(str(source))
    del graph.graph.value_info[:]       # the shapes traced at export; onnxruntime infers them again
    _untie(graph)
    excluded = [node.name for node in graph.graph.node if fixed.intersection(node.input)]
    onnx.save(graph, str(plain))
    # 7-bit weights (reduce_range): on x86 without VNNI onnxruntime's u8 x s8 kernels add pairs of
    # products in int16 and saturate with full-range weights (probabilities 0.03 off on a Zen 2); the
    # exported file may run on any CPU, so it is quantized for the one without VNNI
    common = dict(per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                  op_types_to_quantize=list(OPERATIONS), nodes_to_exclude=excluded)
    logging.disable(logging.WARNING)    # its advice to run its pre-processing, which the export's optimiser did
    try:
        if method == "dynamic":
            quantize_dynamic(plain, dest, **common)
        else:
            quantize_static(plain, dest, FeedReader(feeds), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, **common)
    finally:
        logging.disable(logging.NOTSET)
