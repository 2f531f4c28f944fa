"""`zoo quantize TASK --checkpoint DIR --method dynamic|static [--calibration SPEC] [--format torch|onnx] --out DIR`.

``--format torch`` (default) writes an int8 model folder (:mod:`zoo.quantized`: int8 Linear layers and
weight-only int8 embeddings, plain safetensors tensors) that ``zoo.load``, ``zoo eval`` and
``zoo predict`` read like any checkpoint; ``--format onnx`` writes an int8 ONNX export folder
(:mod:`tasks.engine.quantize_onnx`) for ``zoo predict --runtime onnx``, for the tasks that export;
each graph of a generating export (prefill or encoder, decoder step) is quantized.

``static`` measures activation ranges on ``--calibration-batches`` batches of ``--calibration SPEC``
(a data SPEC as ``--data`` takes: its train split for built-in sets, all of any other), spread over the
set and built by the task's own evaluation collate. Everything a user can get wrong (method, format,
calibration, --out, a checkpoint that does not load, an int8 checkpoint) is refused in one line before
any model is run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from tasks.engine.commands import checkpoint_folder
from tasks.engine.data import parse_spec
from tasks.engine.export import task_module
from tasks.engine.export_command import load_checkpoint, new_folder
from tasks.engine.flags import POSITIVE_INT
from zoo.checkpoint import WEIGHTS
from zoo.cli import ArgumentParser
from zoo.errors import ZooError
from zoo.quantized import METHODS, quantize
from zoo.registry import COMMANDS

FORMATS = ("torch", "onnx")


def calibration_batches(task: Any, model: nn.Module, dataset: Any, count: int, batch_size: int) -> list[dict]:
    """Up to ``count`` batches of ``batch_size`` samples spread evenly over ``dataset``, through the
    task's evaluation collate for ``model``."""
    dataset = task.for_model(dataset, model)
    total = min(len(dataset), count * batch_size)
    indices = [i * len(dataset) // total for i in range(total)]
    collate = task.make_collate(model, train=False)
    return [collate([dataset[i] for i in indices[start:start + batch_size]]) for start in range(0, total, batch_size)]


def quantize_checkpoint(task: Any, checkpoint: str, method: str, out: str | Path, fmt: str = "torch",
                        calibration: str | None = None, batches: int = 8, batch_size: int = 8) -> Path:
    """Write the int8 form of ``task``'s model in ``checkpoint`` to ``out`` (see the module docstring)."""
    if method not in METHODS:
        raise ZooError(f"--method {method}: unknown method; use one of {', '.join(METHODS)}")
    if fmt not in FORMATS:
        raise ZooError(f"--format {fmt}: unknown format; use one of {', '.join(FORMATS)}")
    if method == "static" and calibration is None:
        raise ZooError("--method static needs --calibration SPEC (data to measure activation ranges on, "
                       "e.g. builtin); or use --method dynamic")
    if method == "dynamic" and calibration is not None:
        raise ZooError("--calibration applies to --method static only; drop it or pass --method static")
    if fmt == "onnx":
        task_module(task)       # a task that does not export is refused first
        try:
            import onnxruntime.quantization  # noqa: F401
        except ImportError:
            raise ZooError("--format onnx needs onnx and onnxruntime: pip install 'zoo[export]'") from None
    if calibration is not None:
        parse_spec(calibration)
    out = new_folder(out)
    data = task.datasets(calibration, "train" if parse_spec(calibration).is_builtin else "all") if calibration else None
    if data is not None and len(data) == 0:
        raise ZooError(f"--calibration {calibration}: no samples to calibrate on; pass a SPEC with data")
    model = load_checkpoint(task, checkpoint, "quantize")
    if model.quantization is not None:
        raise ZooError(f"--checkpoint {checkpoint} is int8 already; quantize the float checkpoint")
    chosen = calibration_batches(task, model, data, batches, batch_size) if data is not None else None
    if fmt == "onnx":
        from tasks.engine.quantize_onnx import write_int8_export

        return write_int8_export(task, model, method, chosen, out)
    quantize(model, method, chosen)
    model.save(out)
    return out


def quantize_parser(task: Any = None) -> ArgumentParser:
    """The parser of ``zoo quantize TASK``."""
    parser = ArgumentParser(prog=f"zoo quantize {task.name if task else 'TASK'}",
                            description="Write an int8 copy of a checkpoint: a model folder zoo loads (--format "
                                        "torch) or an ONNX export folder (--format onnx).")
    g = parser.add_argument_group("quantization")
    g.add_argument("--checkpoint", required=True, metavar="DIR", help="run folder (its best) or model folder")
    g.add_argument("--method", required=True, choices=METHODS,
                   help="dynamic: inputs quantized at run time; static: input ranges measured on --calibration")
    g.add_argument("--calibration", default=None, metavar="SPEC",
                   help="data SPEC for --method static (built-in sets: their train split)")
    g.add_argument("--calibration-batches", type=POSITIVE_INT, default=8, metavar="N", help="batches calibrated on")
    g.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="samples per calibration batch")
    g.add_argument("--format", default="torch", choices=FORMATS, help="an int8 zoo model folder, or int8 ONNX")
    g.add_argument("--out", required=True, metavar="DIR", help="new folder for the int8 model")
    return parser


def _megabytes(paths: list[Path]) -> str:
    """``a + b 1.23 MB``: the files' names and their size together."""
    return f"{' + '.join(p.name for p in paths)} {sum(p.stat().st_size for p in paths) / 2**20:.2f} MB"


@COMMANDS.register("quantize", parser=quantize_parser)
def quantize_command(task: Any, argv: list[str]) -> Path:
    """``zoo quantize TASK --checkpoint DIR --method dynamic|static ...``: prints the sizes before and after."""
    args = quantize_parser(task).parse_args(argv)
    out = quantize_checkpoint(task, args.checkpoint, args.method, args.out, args.format, args.calibration,
                              args.calibration_batches, args.batch_size)
    written = sorted(out.glob("*.onnx")) if args.format == "onnx" else [out / WEIGHTS]   # generation: two graphs
    source = checkpoint_folder(task, args.checkpoint, "quantize") / WEIGHTS
    print(f"quantized {args.checkpoint} ({args.method} int8, {args.format}) to {out}: "
          f"{_megabytes([source])} -> {_megabytes(written)}")
    return out
