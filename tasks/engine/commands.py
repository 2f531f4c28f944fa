"""`zoo train|eval|predict TASK ...`: each command's parser, the checks that refuse a bad command
before any heavy work (data, model), and the calls into a Task object.

``zoo eval`` scores the test split of the run's own ``--data`` (read from the run's ``args.json``)
when no ``--data`` is given, ``builtin``'s test split for a model folder outside a run, and all
of a ``--data`` SPEC unless ``--split`` says otherwise (built-in sets: their test split).
"""
from __future__ import annotations

import argparse
import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

import zoo
from tasks.engine.checkpoints import checkpoint_step, resolve_checkpoint
from tasks.engine.config import config_defaults, dump_config, read_config_file
from tasks.engine.data import SPLIT_NAMES, parse_spec, read_utf8, split_lines
from tasks.engine.device import pick_device
from tasks.engine.evaluation import EvalOptions
from tasks.engine.loggers import check_loggers
from tasks.engine.precision import AUTO, AUTO_HELP, resolve_precision
from tasks.engine.pretrained import FLAG, check_source, weights_family
from tasks.engine.flags import (DEVICE_HELP, DEVICES, POSITIVE_INT, PRECISIONS, add_generation_arguments,
                                add_train_arguments, check_factory_args)
from tasks.engine.task import Task
from zoo.checkpoint import read_config
from zoo.cli import ArgumentParser, did_you_mean
from zoo.errors import ZooError
from zoo.progress import progress_enabled
from zoo.registry import BACKBONES, COMMANDS, HEADS, TASKS

HEAD_HELP = "the head to use, by name, of a model with several heads (zoo.multihead)"


def command_parser(command: str, task: Task | None = None) -> ArgumentParser:
    """The parser of `zoo COMMAND TASK`: the flags every task shares, then ``task``'s (all tasks listed when None)."""
    parser = ArgumentParser(prog=f"zoo {command} {task.name if task else 'TASK'}",
                            description=_description(command, task))
    if command == "train":
        add_train_arguments(parser)
    elif command == "eval":
        g = parser.add_argument_group("evaluation")
        g.add_argument("--checkpoint", required=True, metavar="DIR", help="run folder (its best) or model folder")
        g.add_argument("--data", default=None, metavar="SPEC",
                       help="data SPEC (default: the run's own --data, read from its args.json; else builtin)")
        g.add_argument("--split", default=None, choices=SPLIT_NAMES,
                       help="default: test for the run's own data and built-in sets, all of any other SPEC")
        g.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="items scored together")
        g.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
        g.add_argument("--precision", default="fp32", choices=(*PRECISIONS, AUTO),
                       help=f"bf16 autocast or plain fp32; {AUTO_HELP}")
        g.add_argument("--out", default=None, help="folder for the task's evaluation files (confusion matrix...)")
        g.add_argument("--head", metavar="NAME", help=HEAD_HELP)
        g.add_argument("--no-progress", action="store_true", help="no progress bar")
    elif command == "predict":
        g = parser.add_argument_group("prediction")
        g.add_argument("inputs", nargs="*", metavar="INPUT", help="texts or file paths")
        g.add_argument("--checkpoint", required=True, metavar="DIR", help="run folder (its best) or model folder")
        g.add_argument("--input-file", metavar="FILE", help="one input per line (UTF-8)")
        g.add_argument("--json", action="store_true", help="one JSON object per input")
        g.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
        g.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                       help="torch: the checkpoint; onnx: a `zoo export --format onnx` folder under onnxruntime")
        g.add_argument("--head", metavar="NAME", help=HEAD_HELP)
        g.add_argument("--no-progress", action="store_true", help="no progress bar")
        if task is None or task.generates:      # only tasks that decode sequences take --beams, --top-k...
            add_generation_arguments(parser)
    else:
        raise ValueError(f"unknown command {command!r}; expected train, eval or predict")
    if task is not None and command == "predict":
        task.add_predict_arguments(parser)
    elif task is not None:
        task.add_arguments(parser)
    return parser


def _description(command: str, task: Task | None) -> str:
    if task is not None:
        return (type(task).__doc__ or task.name).strip().splitlines()[0]
    lines = [f"The flags every task shares for `zoo {command}`; `zoo {command} TASK --help` adds the task's "
             "own flags and defaults.", "", "tasks:"]
    for name in TASKS.list():
        doc = (type(zoo.get_task(name)).__doc__ or "").strip().splitlines()
        lines.append(f"  {name:22} {doc[0] if doc else ''}")
    return "\n".join(lines)


def checkpoint_folder(task: Task, path: str, command: str, flag: str = "--checkpoint",
                      prefer: str = "best") -> Path:
    """The model folder ``flag PATH`` names (a run folder's ``prefer`` pointer); refuses another task's model."""
    folder = _resolved(path, flag, prefer)
    owner = read_config(folder).get("task")
    if owner and owner != task.name:
        raise ZooError(f"{flag} {path} is a {owner} model; use `zoo {command} {owner}`")
    return folder


def _resolved(path: str, flag: str, prefer: str = "best") -> Path:
    """``resolve_checkpoint``, its missing-folder errors naming ``flag``."""
    try:
        return resolve_checkpoint(path, prefer)
    except FileNotFoundError as err:
        raise ZooError(f"{flag}: {err}; pass a run folder (runs/...) or a model folder holding config.json") from None


def check_train_args(task: Task, args: argparse.Namespace) -> None:
    """Refuse what would fail later in ``zoo train``: a bad --data SPEC, another task's or a missing
    --resume or --distill-from checkpoint, a --pretrained source that is missing, unprepared or of a kind the task
    does not start from, unknown --backbone/--head names or keys of their arguments."""
    parse_spec(args.data)
    args.logger = check_loggers(args.logger)
    if getattr(args, "distill_from", None):
        checkpoint_folder(task, args.distill_from, "train", "--distill-from")
    if args.resume:
        checkpoint_folder(task, args.resume, "train", "--resume", prefer="last")
        return      # the model comes from the checkpoint: --backbone and --head play no part
    backbone = args.backbone
    kind = check_source(task.name, task.pretrained_kinds, args.init_backbone) if args.init_backbone else None
    if kind == "zoo":
        backbone = backbone or read_config(_resolved(args.init_backbone, FLAG))["backbone"]["name"]
    if (kind == "weights" and not str(backbone or "").startswith("torchaudio/")
            and weights_family(args.init_backbone) == "torchaudio_wav2vec2"):
        raise ZooError(f"{FLAG} {args.init_backbone} holds torchaudio wav2vec2 weights, which do not say their "
                       f"architecture; pass --backbone torchaudio/<factory> (and its --backbone-args) naming it")
    if kind != "weights":      # a transformers folder describes its backbone; a weights file takes the factory's
        check_factory_args(BACKBONES, backbone or task.default_backbone, args.backbone_args, "--backbone-args")
    head = args.head or task.default_head
    if head:        # a multi-task run has a head per part and none of its own
        check_factory_args(HEADS, task.composite_heads.get(head, head), args.head_args, "--head-args",
                           reserved=("backbone",))
    if args.precision == "fp16" and pick_device(args.device).type != "cuda":
        raise ZooError("--precision fp16 trains on a CUDA device only (CPUs have no fast fp16 matrix units and "
                       "need no loss scaling); use --precision bf16 or fp32 on the CPU")


def train_args(task: Task, argv: list[str], prog: str | None = None) -> argparse.Namespace:
    """The parsed flags of `zoo train TASK` (``prog``: the command's name in errors and help when it is
    another): the task's defaults, then a ``--config`` file's values, then ``argv``."""
    parser = command_parser("train", task)
    parser.prog = prog or parser.prog
    args = parser.parse_args(argv)
    if args.config:
        parser.set_defaults(**config_defaults(parser, read_config_file(args.config), f"--config {args.config}"))
        args = parser.parse_args(argv)
    return args


@COMMANDS.register("train", parser=lambda task=None: command_parser("train", task))
def train_command(task: Task, argv: list[str]) -> Path | None:
    """``zoo train TASK``: parse the shared and task flags (and ``--config``), check them, then train;
    with ``--print-config`` print the resolved flags as a config file instead (returns None)."""
    from tasks.engine.trainer import train

    args = train_args(task, argv)
    check_train_args(task, args)
    if args.print_config:
        print(dump_config(vars(args), args.print_config), end="")
        return None
    with progress_enabled(not args.no_progress):
        return train(task, args)


def eval_data(folder: Path, data: str | None, split: str | None, part: str | None = None) -> tuple[str, str]:
    """(SPEC, split) to score the model in ``folder`` on: see the module docstring; ``part``: the task whose
    data set a multi-task run (`zoo multitask`, its ``data_for``) trained this head on."""
    if data is None:
        args_file = folder.parent / "args.json"           # the run folder holding this checkpoint
        run = _read_json(args_file) if args_file.is_file() else {}
        saved = (run.get("data_for") or {}).get(part) or run.get("data")
        return saved or "builtin", split or "test"
    return data, split or ("test" if parse_spec(data).is_builtin else "all")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ZooError(f"{path}: not valid JSON ({err}); pass --data SPEC to say what to score") from None


@COMMANDS.register("eval", parser=lambda task=None: command_parser("eval", task))
def eval_command(task: Task, argv: list[str]) -> dict[str, Any]:
    """``zoo eval TASK --checkpoint DIR``: the last printed line is one JSON object of metrics."""
    args = command_parser("eval", task).parse_args(argv)
    folder = checkpoint_folder(task, args.checkpoint, "eval")
    args.data, split = eval_data(folder, args.data, args.split, task.name)
    parse_spec(args.data)
    device = pick_device(args.device)
    args.precision = resolve_precision(args.precision, device, PRECISIONS)
    model = one_head(zoo.load(folder, map_location=device), args.checkpoint, args.head, task)
    dataset = task.for_model(task.datasets(args.data, split), model)    # n counts what the model scores
    options = EvalOptions.from_args(args, split=split, step=checkpoint_step(folder))   # named in picture titles
    with progress_enabled(not args.no_progress):
        metrics = task.evaluate(model, dataset, options)
    result = {**metrics, "data": args.data, "split": split, "n": len(dataset), "precision": args.precision}
    print(json.dumps(result))
    return result


def read_input_file(path: str) -> list[str]:
    """The non-blank lines of ``--input-file`` (UTF-8, a BOM allowed); errors name the flag, file and line."""
    try:
        text = read_utf8(path)
    except FileNotFoundError as err:
        raise ZooError(f"--input-file {err}; pass a text file with one input per line") from None
    except ZooError as err:
        raise ZooError(f"--input-file {err}") from None
    return [line for line in split_lines(text) if line.strip()]


def one_head(model: torch.nn.Module, checkpoint: str | Path, head: str | None,
             task: Task | None = None) -> torch.nn.Module:
    """``model`` itself, or for a model with several heads the single-head view of ``--head`` (required
    unless ``task`` decodes with all of them, e.g. a hybrid CTC/attention ASR model)."""
    heads = getattr(model, "heads", None)
    if heads is None:
        if head is not None:
            raise ZooError(f"--head {head}: --checkpoint {checkpoint} has one head; drop --head")
        return model
    if head is None and task is not None and task.uses_all_heads(model):
        return model
    if head is None:
        raise ZooError(f"--checkpoint {checkpoint} has several heads ({', '.join(heads)}); pass --head NAME")
    if task is not None and head != task.name and head in heads and head in TASKS:
        raise ZooError(f"--head {head}: that head was trained for the {head} task (`zoo multitask`); "
                       f"name that task instead of {task.name}, or pass --head {task.name}")
    return model.single_head(head)


def load_predictor(task: Task, checkpoint: str | Path, device: str = "auto", runtime: str = "torch",
                   flag: str = "--checkpoint",
                   head: str | None = None) -> tuple[Callable[..., list[Any]], torch.nn.Module | None]:
    """``(predict(inputs, **options), model)``: ``task.predict`` on the model ``checkpoint`` names (a run
    folder's best; ``head``: the head of a several-head model), loaded once on ``device``; with
    ``runtime="onnx"`` the export folder under onnxruntime (model None). What `zoo predict` runs, and
    ``zoo.pipeline`` (through this command's registry entry); errors name the argument as ``flag``."""
    if runtime == "onnx":
        from tasks.engine.export import exported_predictor

        return exported_predictor(task, checkpoint), None
    if runtime != "torch":
        raise ZooError(f"runtime {runtime!r}: expected torch or onnx")
    model = zoo.load(checkpoint_folder(task, str(checkpoint), "predict", flag), map_location=pick_device(device))
    model = one_head(model, checkpoint, head, task)
    return functools.partial(task.predict, model), model


def prediction_options(task: Task, given: Mapping[str, Any]) -> dict[str, Any]:
    """``task.predict``'s keyword arguments as `zoo predict TASK` passes them by default, ``given`` over them
    (``zoo.pipeline``'s options); a name ``task.predict`` does not take is refused, listing those it takes."""
    defaults = task.predict_options(command_parser("predict", task).parse_args(["--checkpoint", "."]))
    named = [p.name for p in inspect.signature(task.predict).parameters.values()
             if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD or p.kind is inspect.Parameter.KEYWORD_ONLY]
    takes = sorted(set(defaults) | set(named[2:]))     # past (model, inputs)
    unknown = sorted(set(given) - set(takes))
    if unknown:
        raise ZooError(f"{task.name} prediction has no option {unknown[0]!r}; it takes {', '.join(takes)}"
                       f"{did_you_mean(unknown[0], takes)}")
    return {**defaults, **given}


@COMMANDS.register("predict", parser=lambda task=None: command_parser("predict", task), predictor=load_predictor,
                   options=prediction_options)
def predict_command(task: Task, argv: list[str]) -> list[Any]:
    """``zoo predict TASK --checkpoint DIR [INPUT ...] [--input-file FILE] [--json]``."""
    parser = command_parser("predict", task)
    args = parser.parse_args(argv)
    inputs = list(args.inputs) + (read_input_file(args.input_file) if args.input_file else [])
    if not inputs:
        parser.error("give at least one INPUT or --input-file")
    options = task.predict_options(args)
    predict, _ = load_predictor(task, args.checkpoint, args.device, args.runtime, head=args.head)
    with progress_enabled(not args.no_progress):
        predictions = predict(inputs, **options)
    for item, prediction in zip(inputs, predictions):
        if args.json:
            print(json.dumps({"input": item, "prediction": prediction}, ensure_ascii=False))
        else:
            print("" if options.get("stream") else task.format_prediction(item, prediction))
    sys.stdout.flush()
    return predictions

