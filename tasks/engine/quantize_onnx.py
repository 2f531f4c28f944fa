"""Int8 ONNX exports: the fp32 graph of ``zoo export`` quantized by onnxruntime.

``dynamic``: ``quantize_dynamic`` (int8 weights, activations quantized at run time: MatMulInteger,
ConvInteger). ``static``: ``quantize_static`` in QDQ form with activation ranges measured by a
:class:`BatchReader` over batches of the task's own data (its collate, the graph's input names).
Both quantize only the weighted operations (:data:`OPERATIONS`), weights per output channel, and
leave out an operation fed by a fixed buffer of the model (the ASR front end's mel filterbank is a
MatMul whose constant is no trained weight); norms, softmax and the additions stay float, which
kept the tiny test models' decisions where quantizing every operation did not.

The folder is an export folder like ``zoo export``'s (``zoo predict --runtime onnx`` reads it), its
sidecar saying ``quantization``.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from torch import nn

from tasks.engine.export import FILES, SIDECAR, write_export

OPERATIONS = ("MatMul", "Gemm", "Conv", "Gather")     # the operations that hold weights
_ONNX = FILES["onnx"]


class BatchReader(CalibrationDataReader):
    """Calibration inputs for onnxruntime: each batch's tensors named as the graph's inputs, as numpy."""

    def __init__(self, batches: list[dict[str, Any]], names: list[str]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(
            [{name: batch[name].cpu().numpy() for name in names} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def write_int8_export(task: Any, model: nn.Module, method: str, batches: list[dict[str, Any]] | None,
                      out: Path) -> Path:
    """Export ``model`` (float, CPU) as ONNX, quantize it by ``method`` into ``out`` with the sidecar."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = write_export(task, model, "onnx", Path(tmp) / "fp32", optimize=True)   # folds the weight transposes
        graph = onnx.load(str(fp32 / _ONNX))
        del graph.graph.value_info[:]       # the shapes traced at export; onnxruntime infers them again
        buffers = {f"model.{name}" for name, _ in model.named_buffers()}
        fixed = [node.name for node in graph.graph.node if buffers.intersection(node.input)]
        plain = Path(tmp) / "plain.onnx"
        onnx.save(graph, str(plain))
        out.mkdir(parents=True, exist_ok=True)
        # 7-bit weights (reduce_range): on x86 without VNNI onnxruntime's u8 x s8 kernels add pairs of
        # products in int16 and saturate with full-range weights (probabilities 0.03 off on a Zen 2); the
        # exported file may run on any CPU, so it is quantized for the one without VNNI
        common = dict(per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                      op_types_to_quantize=list(OPERATIONS), nodes_to_exclude=fixed)
        logging.disable(logging.WARNING)    # its advice to run its pre-processing, which the export's optimiser did
        try:
            if method == "dynamic":
                quantize_dynamic(plain, out / _ONNX, **common)
            else:
                names = [value.name for value in graph.graph.input]
                quantize_static(plain, out / _ONNX, BatchReader(batches or [], names), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, **common)
        finally:
            logging.disable(logging.NOTSET)
        for item in fp32.iterdir():       # the sidecar and the tokenizer
            if item.name != _ONNX:
                shutil.copy2(item, out / item.name)
    sidecar = json.loads((out / SIDECAR).read_text(encoding="utf-8"))
    sidecar["quantization"] = {"method": method, "operations": list(OPERATIONS), "weights": "int8 per channel",
                               "activations": "uint8, calibrated" if method == "static" else "int8 at run time",
                               "onnxruntime_version": onnxruntime.__version__,
                               "calibration_batches": len(batches or [])}
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    return out
