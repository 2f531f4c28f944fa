"""The ``zoo`` command. Task commands dispatch through the task registry; ``bench`` and ``demo``
hand over to ``python -m benchmarks`` and ``python -m tasks.engine.demo``."""
from __future__ import annotations

import argparse
import os
import sys

import zoo
from zoo.registry import BACKBONES, HEADS, TASKS

USAGE = """zoo <command> ...

  zoo list {backbones,heads,tasks} [PATTERN]       what the registries hold
  zoo data prepare [TASK ...] [--quick] [--force]  build the built-in data sets (the only command that fetches)
  zoo train TASK [flags]                           train (zoo train TASK --help for the flags)
  zoo eval TASK --checkpoint DIR [--data SPEC] [--split SPLIT]
  zoo predict TASK --checkpoint DIR [INPUT ...] [--input-file FILE] [--json]
  zoo bench [flags]                                the benchmark runner (python -m benchmarks --help)
  zoo demo                                         train, evaluate and benchmark every task briefly
"""


def _list(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="zoo list")
    parser.add_argument("kind", choices=["backbones", "heads", "tasks"])
    parser.add_argument("pattern", nargs="?", default="*")
    args = parser.parse_args(argv)
    registry = {"backbones": BACKBONES, "heads": HEADS, "tasks": TASKS}[args.kind]
    for name in registry.list(args.pattern):
        meta = registry.meta(name) if "/" not in name else {}
        shown = {k: v for k, v in meta.items() if k in ("modality", "causal", "accepts", "input")}
        print(name + ("  " + "  ".join(f"{k}={v}" for k, v in shown.items()) if shown else ""))


def _data(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="zoo data")
    parser.add_argument("action", choices=["prepare"])
    parser.add_argument("tasks", nargs="*", help="default: every task")
    parser.add_argument("--force", action="store_true", help="rebuild even when prepared")
    parser.add_argument("--set", dest="sets", action="append", help="only these built-in sets (repeatable)")
    parser.add_argument("--quick", action="store_true", help="only each task's quickest set (what `zoo demo` uses)")
    args = parser.parse_args(argv)
    for name in args.tasks or TASKS.list():
        task = zoo.get_task(name)
        task.prepare([task.quick_set] if args.quick else args.sets, force=args.force)


def _hand_over(module: str, argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``zoo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    try:
        if command == "list":
            _list(rest)
        elif command == "data":
            _data(rest)
        elif command in ("train", "eval", "predict"):
            if not rest or rest[0].startswith("-"):
                sys.exit(f"usage: zoo {command} TASK ...; tasks: {', '.join(TASKS.list())}")
            zoo.get_task(rest[0]).command(command, rest[1:])
        elif command == "bench":
            _hand_over("benchmarks", rest)
        elif command == "demo":
            _hand_over("tasks.engine.demo", rest)
        else:
            sys.exit(f"zoo: unknown command {command!r}\n\n{USAGE}")
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.exit(f"zoo {command}: error: {message}")


if __name__ == "__main__":
    main()
