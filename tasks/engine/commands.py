"""`zoo train|eval|predict TASK ...`: argument parsing and the calls into a Task object."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

import zoo
from tasks.engine.task import Task


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The generation options every generating task shares."""
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--length-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The generation keyword arguments from parsed flags."""
    return dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                top_p=args.top_p, beams=args.beams, length_penalty=args.length_penalty, seed=args.seed)


def load_checkpoint(path: str, device: torch.device) -> torch.nn.Module:
    """A model from a run folder (its ``best``) or a model folder."""
    from tasks.engine.trainer import resolve_checkpoint

    return zoo.load(resolve_checkpoint(path), map_location=device)


def train_command(task: Task, argv: list[str]) -> Path:
    """``zoo train TASK``: parse the shared and task flags, then train."""
    from tasks.engine.trainer import add_train_arguments, train

    parser = argparse.ArgumentParser(prog=f"zoo train {task.name}")
    add_train_arguments(parser)
    task.add_arguments(parser)
    return train(task, parser.parse_args(argv))


def eval_command(task: Task, argv: list[str]) -> dict[str, Any]:
    """``zoo eval TASK --checkpoint DIR``: the last printed line is one JSON object of metrics."""
    parser = argparse.ArgumentParser(prog=f"zoo eval {task.name}")
    parser.add_argument("--checkpoint", required=True, help="run folder (its best) or model folder")
    parser.add_argument("--data", default="builtin", help="data SPEC; built-in sets evaluate --split")
    parser.add_argument("--split", default=None, help="default: test for built-in sets, all for files")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--out", default=None, help="folder for the task's evaluation files (confusion matrix...)")
    task.add_arguments(parser)
    args = parser.parse_args(argv)
    split = args.split or ("test" if args.data.startswith("builtin") else "all")
    device = pick_device(args.device)
    model = load_checkpoint(args.checkpoint, device)
    dataset = task.datasets(args.data, split)
    metrics = task.evaluate(model, dataset, args)
    result = {**metrics, "split": split, "n": len(dataset)}
    print(json.dumps(result))
    return result


def predict_command(task: Task, argv: list[str]) -> list[Any]:
    """``zoo predict TASK --checkpoint DIR [INPUT ...] [--input-file FILE] [--json]``."""
    parser = argparse.ArgumentParser(prog=f"zoo predict {task.name}")
    parser.add_argument("inputs", nargs="*", help="texts or file paths")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--input-file", help="one input per line")
    parser.add_argument("--json", action="store_true", help="one JSON object per input")
    parser.add_argument("--device", default="auto")
    add_generation_arguments(parser)
    task.add_predict_arguments(parser)
    args = parser.parse_args(argv)
    inputs = list(args.inputs)
    if args.input_file:
        lines = Path(args.input_file).read_text(encoding="utf-8").splitlines()
        inputs += [line for line in lines if line.strip()]
    if not inputs:
        parser.error("give at least one INPUT or --input-file")
    model = load_checkpoint(args.checkpoint, pick_device(args.device))
    predictions = task.predict(model, inputs, **task.predict_options(args))
    for item, prediction in zip(inputs, predictions):
        if args.json:
            print(json.dumps({"input": item, "prediction": prediction}, ensure_ascii=False))
        else:
            print(task.format_prediction(item, prediction))
    sys.stdout.flush()
    return predictions
