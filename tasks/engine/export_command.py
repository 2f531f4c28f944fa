"""`zoo export TASK --checkpoint DIR --format onnx|torch-export --out DIR` (see :mod:`tasks.engine.export`).

The checkpoint is resolved and loaded before any tracing, so a model that does not load is reported in
one line and nothing is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

import zoo
from tasks.engine.commands import HEAD_HELP, checkpoint_folder, one_head
from tasks.engine.export import FILES, SIDECAR, exporting_tasks, one_line, task_module, write_export
from zoo.cli import ArgumentParser
from zoo.errors import ZooError
from zoo.progress import progress_enabled
from zoo.registry import COMMANDS


def export(task: Any, checkpoint: str, fmt: str, out: str | Path, optimize: bool = True,
           head: str | None = None) -> Path:
    """Write ``task``'s model in ``checkpoint`` to ``out`` as ``fmt`` ("onnx" | "torch-export") with its
    sidecar; returns ``out``. The checkpoint is loaded (and refused in one line) before any tracing.
    ``head``: the head of a several-head model to export (its single-head view); required for one."""
    if fmt not in FILES:
        raise ZooError(f"--format {fmt}: unknown format; use one of {', '.join(FILES)}")
    task_module(task)       # refuses a task that does not export before anything else
    out = new_folder(out)
    model = one_head(load_checkpoint(task, checkpoint, "export"), checkpoint, head)
    if fmt == "onnx" and getattr(model, "quantization", None) is not None:
        raise ZooError(f"--checkpoint {checkpoint} is an int8 zoo model, whose int8 matmul (aten._int_mm) has no "
                       f"ONNX form; export it with --format torch-export, or write int8 ONNX from the float "
                       f"checkpoint with `zoo quantize {task.name} --format onnx`")
    return write_export(task, model, fmt, out, optimize)


def new_folder(out: str | Path) -> Path:
    """``--out``: a folder that does not exist yet or is empty (refused in one line otherwise)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ZooError(f"--out {out} is not empty; pass a new folder")
    return out


def load_checkpoint(task: Any, checkpoint: str, command: str) -> nn.Module:
    """The model of ``--checkpoint`` on the CPU in eval mode, for ``zoo COMMAND TASK`` ("export",
    "quantize"); a model that does not load is refused in one line saying nothing was written."""
    folder = checkpoint_folder(task, checkpoint, command)
    try:
        return zoo.load(folder, map_location="cpu").eval()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ZooError(f"--checkpoint {checkpoint}: the model does not load ({one_line(err)}); nothing was "
                       f"{command.removesuffix('e')}ed: fix or retrain the checkpoint") from None


def export_parser(task: Any = None) -> ArgumentParser:
    """The parser of ``zoo export TASK``."""
    parser = ArgumentParser(prog=f"zoo export {task.name if task else 'TASK'}",
                            description="Export a checkpoint as an ONNX graph or a torch.export program, with an "
                                        f"{SIDECAR} sidecar (tasks that export: {', '.join(exporting_tasks())}).")
    g = parser.add_argument_group("export")
    g.add_argument("--checkpoint", required=True, metavar="DIR", help="run folder (its best) or model folder")
    g.add_argument("--format", default="onnx", choices=tuple(FILES), help="ONNX (dynamo exporter) or torch.export")
    g.add_argument("--out", required=True, metavar="DIR", help="new folder for the graph and its sidecar")
    g.add_argument("--head", metavar="NAME", help=HEAD_HELP)
    g.add_argument("--no-optimize", action="store_true", help="skip onnxscript's graph optimisation (faster export)")
    g.add_argument("--no-progress", action="store_true", help="no progress display")
    return parser


@COMMANDS.register("export", parser=export_parser)
def export_command(task: Any, argv: list[str]) -> Path:
    """``zoo export TASK --checkpoint DIR --format onnx|torch-export --out DIR``."""
    args = export_parser(task).parse_args(argv)
    with progress_enabled(not args.no_progress):
        out = export(task, args.checkpoint, args.format, args.out, optimize=not args.no_optimize, head=args.head)
    print(f"exported {args.checkpoint} as {args.format} to {out}")
    return out

