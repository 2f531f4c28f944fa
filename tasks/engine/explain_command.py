"""`zoo explain TASK --checkpoint DIR INPUT... [--method M] [--out DIR]`: why the model predicted what it did.

Each task's ``tasks/<task>/explain.py`` (found by :meth:`Task.companion`) declares ``METHODS`` (the first
is the default), optionally ``add_arguments(parser)`` for its own flags (their values reach it as
keywords named by their dests), and
``explain_inputs(model, inputs, method, out, **options) -> list[dict]``: per input its ``prediction``,
``score`` (with ``score_name``), ``method`` and the ``files`` written (pictures titled with all three).
Flags, the method and input files are checked before the model is loaded.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import zoo
from tasks.engine.commands import checkpoint_folder, read_input_file
from tasks.engine.device import pick_device
from tasks.engine.explanations import explain_module
from tasks.engine.flags import DEVICE_HELP, DEVICES
from zoo.cli import ArgumentParser
from zoo.errors import ZooError
from zoo.registry import COMMANDS

DEFAULT_OUT = "explanations"


def explain_parser(task: Any = None) -> ArgumentParser:
    """The parser of ``zoo explain TASK`` (the task's methods and flags when ``task`` is given)."""
    module = explain_module(task) if task is not None else None
    parser = ArgumentParser(prog=f"zoo explain {task.name if task else 'TASK'}",
                            description="Explain a checkpoint's predictions: a picture per input naming the "
                                        "prediction, its score and the method.")
    g = parser.add_argument_group("explanation")
    g.add_argument("inputs", nargs="*", metavar="INPUT", help="texts or file paths")
    g.add_argument("--checkpoint", required=True, metavar="DIR", help="run folder (its best) or model folder")
    g.add_argument("--input-file", metavar="FILE", help="one input per line (UTF-8)")
    methods = module.METHODS if module is not None else None
    g.add_argument("--method", choices=methods, default=methods[0] if methods else None,
                   help="how to attribute the prediction (`zoo explain TASK --help` lists a task's methods)")
    g.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="folder for the pictures")
    g.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    g.add_argument("--json", action="store_true", help="one JSON object per input")
    if module is not None and hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    return parser


def check_files(task: Any, inputs: list[str]) -> None:
    """Image and audio tasks read files: every input must be one (checked before the model loads)."""
    if task.modality not in ("image", "audio"):
        return
    for item in inputs:
        if not Path(item).is_file():
            raise ZooError(f"INPUT {item}: no such file; `zoo explain {task.name}` takes {task.modality} file paths")


def explain(task: Any, checkpoint: str, inputs: list[str], method: str | None = None,
            out: str | Path = DEFAULT_OUT, device: str = "auto", **options: Any) -> list[dict[str, Any]]:
    """Explain ``checkpoint``'s predictions on ``inputs`` with ``method`` (the task's default when None);
    pictures go to ``out``. Returns one dict per input (see the module docstring)."""
    module = explain_module(task)
    method = method or module.METHODS[0]
    if method not in module.METHODS:
        raise ZooError(f"--method {method}: unknown for {task.name}; use one of {', '.join(module.METHODS)}")
    if not inputs:
        raise ZooError("give at least one INPUT or --input-file")
    check_files(task, inputs)
    folder = checkpoint_folder(task, checkpoint, "explain")
    model = zoo.load(folder, map_location=pick_device(device)).eval()
    return module.explain_inputs(model, inputs, method, Path(out), **options)


@COMMANDS.register("explain", parser=explain_parser)
def explain_command(task: Any, argv: list[str]) -> list[dict[str, Any]]:
    """``zoo explain TASK --checkpoint DIR INPUT... [--method M] [--out DIR] [--json]``."""
    parser = explain_parser(task)
    args = parser.parse_args(argv)
    inputs = list(args.inputs) + (read_input_file(args.input_file) if args.input_file else [])
    if not inputs:
        parser.error("give at least one INPUT or --input-file")
    shared = {action.dest for action in explain_parser()._actions}
    options = {dest: value for dest, value in vars(args).items() if dest not in shared}   # the task's own flags
    results = explain(task, args.checkpoint, inputs, args.method, args.out, args.device, **options)
    for item, result in zip(inputs, results):
        if args.json:
            print(json.dumps({"input": item, "explanation": result}, ensure_ascii=False))
        else:
            print(f"{item}: {result['prediction']} ({result['score_name']} {result['score']:.4g}) "
                  f"[{result['method']}] -> {', '.join(result['files'])}")
    sys.stdout.flush()
    return results
