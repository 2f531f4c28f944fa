"""The ``zoo`` command: ``zoo list|data|weights|train|eval|predict|export|explain|multitask|bench|demo``, argparse
subcommands.

``list``, ``data`` and ``weights`` run here; ``train``, ``eval`` and ``predict`` take a TASK, looked up in
the task registry, and hand the rest of the line to ``task.command`` (the task's own flags:
``zoo train sentiment --help``); ``bench`` and ``demo`` hand over to ``python -m benchmarks`` and
``python -m tasks.engine.demo``; ``multitask`` hands its whole line to its entry in the command registry
(it parses its own flags: ``--part TASK`` names the tasks).

Every mistake a user can fix prints one line, ``zoo: error: <what is wrong and the fix>``, with
a non-zero status and no traceback: argparse's (with a did-you-mean for commands, choices and
flags, from :class:`ArgumentParser`) and those raised while running (:class:`zoo.errors.ZooError`,
missing or unwritable files, a full disk, unknown registry names, other ``ValueError``).
``ZOO_DEBUG=1`` lets them through with their traceback.
"""
from __future__ import annotations

import argparse
import difflib
import errno
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import zoo
from zoo.errors import ZooError
from zoo.progress import progress_enabled
from zoo.registry import BACKBONES, COMMANDS, HEADS, TASKS

TASK_COMMANDS = ("train", "eval", "predict", "export", "quantize", "prune", "explain")
HANDED_OVER = {"bench": "benchmarks", "demo": "tasks.engine.demo"}     # command -> module run as a new process
OWN_FLAGS = ("multitask",)      # commands of the COMMANDS registry that parse their whole line themselves
_OS_FIXES = {     # what the user can do about an OS error, by errno
    errno.ENOSPC: "no space left on the disk; free some space or write elsewhere (--out)",
    errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere (--out)",
    errno.EROFS: "the file system is read-only; write elsewhere (--out)",
    errno.EACCES: "permission denied; fix the permissions or use another path",
    errno.EPERM: "operation not permitted; fix the permissions or use another path",
    errno.ENOENT: "no such file or folder; check the path",
    errno.EISDIR: "is a folder, not a file; pass a file",
    errno.ENOTDIR: "a part of this path is not a folder; check the path",
    errno.EEXIST: "already exists; remove it or choose another path",
}
_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` naming the choices closest to ``word``, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with each flag's default appended (unless it is None/False or the help mentions it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if "default" in text or not shown or (not action.option_strings and action.nargs not in ("?", "*")):
            return action.help
        return f"{text} (default: %(default)s)".strip()


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``zoo: error: ...``, with a did-you-mean.

    Unknown flags are matched against the flags of the (sub)command that was parsed, a wrong
    choice (a subcommand, ``--precision fp16``) against the choices.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print ``zoo: error: <message>`` on one line and exit with status 2."""
        text = " ".join(message.split())
        if text.endswith("expected one argument"):       # e.g. `--lr -1e-3`: argparse took the value for a flag
            text += " (a value that starts with '-' goes as --flag=VALUE)"
        self.exit(2, f"zoo: error: {text} (see `{self.prog} --help`)\n")

    def refuse_unknown(self, kind: str, names: Sequence[str], known: Sequence[str]) -> None:
        """Exit with one line naming the first of ``names`` not in ``known``, and the closest known ones."""
        for name in names:
            if name not in known:
                self.error(f"unknown {kind} {name!r} ({kind}s: {', '.join(known)}){did_you_mean(name, known)}")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            message = f"unrecognized arguments: {' '.join(extras)}"
            flags = [e.split("=", 1)[0] for e in extras if e.startswith("-")]
            if flags:
                message += did_you_mean(flags[0], self._flags(namespace))
            self.error(message)
        return namespace

    def _flags(self, namespace: argparse.Namespace) -> list[str]:
        """The long flags of this parser and of the subcommand ``namespace`` went into."""
        flags = [f for f in self._option_string_actions if f.startswith("--")]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(namespace, action.dest, None))
                if isinstance(chosen, ArgumentParser):
                    flags += chosen._flags(namespace)
        return flags

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is None or value in action.choices:
            return
        choices = [str(c) for c in action.choices]
        hint = did_you_mean(str(value), choices)
        if isinstance(action, argparse._SubParsersAction):
            raise argparse.ArgumentError(None, f"unknown command {value!r} (commands: {', '.join(choices)}){hint}")
        raise argparse.ArgumentError(action, f"invalid choice {value!r} (choose from {', '.join(choices)}){hint}")


class _CommandHelp(argparse.Action):
    """``zoo train --help``: the flags every task shares for that command, and the tasks."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0,
                         help="show the flags every task shares, and the tasks")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        command = parser.prog.split()[-1]     # the shared flags come from the task packages, through the registry
        if command in COMMANDS:
            COMMANDS.meta(command)["parser"]().print_help()
        else:
            parser.print_help()
        parser.exit()


def build_parser() -> ArgumentParser:
    """The ``zoo`` parser: one subparser per command (``train/eval/predict`` take TASK and its flags)."""
    parser = ArgumentParser(prog="zoo", description="A multi-modal model zoo: train, evaluate, predict, benchmark.",
                            epilog="`zoo COMMAND --help` describes a command; `zoo train TASK --help` a task's flags.")
    parser.add_argument("--version", action="version", version=f"zoo {zoo.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    listing = commands.add_parser("list", help="what the registries hold", description="List registered names.")
    listing.add_argument("kind", choices=("backbones", "heads", "tasks", "weights"))
    listing.add_argument("pattern", nargs="?", default="*", help="shell wildcard such as 'vit_*' or 'timm/resnet*'")
    listing.set_defaults(run=_list)

    data = commands.add_parser("data", help="build the built-in data sets (the only command that fetches)",
                               description="Build the tasks' built-in data sets into $ZOO_DATA.")
    data.add_argument("action", choices=("prepare",))
    data.add_argument("tasks", nargs="*", metavar="TASK", help="default: every task")
    data.add_argument("--force", action="store_true", help="rebuild even when prepared")
    data.add_argument("--set", dest="sets", action="append", help="only these built-in sets (repeatable)")
    data.add_argument("--quick", action="store_true", help="only each task's quickest set (what `zoo demo` uses)")
    data.add_argument("--no-progress", action="store_true", help="no progress bars")
    data.set_defaults(run=_data)

    weights = commands.add_parser("weights", help="fetch named pretrained weights (`zoo list weights`)",
                                  description="Prepare named pretrained weights into $ZOO_DATA/weights.")
    weights.add_argument("action", choices=("prepare",))
    weights.add_argument("names", nargs="*", metavar="NAME", help="default: every built-in entry")
    weights.add_argument("--force", action="store_true", help="fetch again even when prepared")
    weights.set_defaults(run=_weights)

    merge = commands.add_parser("merge-lora", help="fold a LoRA run's adapters into a plain model folder",
                                description="Merge the LoRA adapters of a checkpoint into its base weights and "
                                            "save a plain model folder (no LoRA layers: ready for export).")
    merge.add_argument("--checkpoint", required=True, metavar="DIR", help="run folder (its best) or model folder")
    merge.add_argument("--out", required=True, metavar="DIR", help="the new model folder (must not exist)")
    merge.set_defaults(run=_merge_lora)

    summaries = {"train": "train a task's model", "eval": "score a checkpoint; the last line is JSON metrics",
                 "predict": "run a checkpoint on inputs (texts or files)",
                 "export": "write a checkpoint as an ONNX graph or a torch.export program",
                 "quantize": "write an int8 copy of a checkpoint (a zoo model folder or ONNX)",
                 "prune": "remove attention heads and MLP channels (or small weights), then fine-tune",
                 "explain": "picture why a checkpoint predicts what it does (attributions, attention)"}
    for name, summary in summaries.items():
        sub = commands.add_parser(name, help=summary, usage=f"zoo {name} TASK [flags]", add_help=False,
                                  description=f"{summary[0].upper()}{summary[1:]}.")
        sub.add_argument("-h", "--help", action=_CommandHelp)
        sub.add_argument("task", nargs="?", metavar="TASK", help="a registered task (`zoo list tasks`)")
        sub.add_argument("flags", nargs=argparse.REMAINDER, help="the task's flags (`zoo train TASK --help`)")
        sub.set_defaults(run=_task_command)

    commands.add_parser("multitask", help="train one backbone on several tasks at once, a head and a data set "
                                          "each (`zoo multitask --help`)", add_help=False)
    commands.add_parser("bench", help="the benchmark runner (`zoo bench --help`)", add_help=False)
    commands.add_parser("demo", help="train, evaluate and benchmark every task briefly (`zoo demo --help`)",
                        add_help=False)
    return parser


def _list(args: argparse.Namespace) -> None:
    if args.kind == "weights":
        _list_weights(args.pattern)
        return
    registry = {"backbones": BACKBONES, "heads": HEADS, "tasks": TASKS}[args.kind]
    names = registry.list(args.pattern)
    if not names:
        prefix, slash, _ = args.pattern.partition("/")
        pool = registry.list(f"{prefix}/*") if slash else registry.list()
        raise ZooError(f"no {registry.kind} matches {args.pattern!r} (`zoo list {args.kind}` lists them all)"
                       f"{did_you_mean(args.pattern.strip('*?'), pool)}")
    for name in names:
        meta = registry.meta(name) if "/" not in name else {}
        shown = {k: v for k, v in meta.items() if k in ("modality", "causal", "accepts", "input")}
        print(name + ("  " + "  ".join(f"{k}={v}" for k, v in shown.items()) if shown else ""))


def _list_weights(pattern: str) -> None:
    from fnmatch import fnmatchcase

    from zoo.pretrained import catalog

    rows = [(name, text) for name, text in catalog.listing() if fnmatchcase(name, pattern)]
    if not rows:
        raise ZooError(f"no pretrained weights match {pattern!r} (`zoo list weights` lists them all)")
    for name, text in rows:
        print(f"{name}  {text}")


def _weights(args: argparse.Namespace) -> None:
    from zoo.pretrained import catalog

    names = args.names or list(catalog.BUILTIN)
    for name in names:      # every name checked before any fetch
        catalog.check_builtin(name)
    for name in names:
        print(f"{name}: {catalog.prepare(name, force=args.force)}")


def _merge_lora(args: argparse.Namespace) -> None:
    from zoo.checkpoint import resolve_checkpoint
    from zoo.lora import merge_lora

    out = Path(args.out)
    if out.exists():
        raise ZooError(f"--out {out} already exists; pass a new folder")
    folder = resolve_checkpoint(args.checkpoint)
    model = zoo.load(folder)
    if model.lora is None:
        raise ZooError(f"--checkpoint {args.checkpoint} has no LoRA adapters (was it trained with --lora?)")
    merge_lora(model).save(out)
    print(f"merged {folder} into {out}")


def _data(args: argparse.Namespace) -> None:
    tasks = [zoo.get_task(name) for name in args.tasks or TASKS.list()]   # every name checked before any fetch
    with progress_enabled(not args.no_progress):
        for task in tasks:
            task.prepare([task.quick_set] if args.quick else args.sets, force=args.force)


def _task_command(args: argparse.Namespace) -> None:
    if args.task is None:
        raise ZooError(f"`zoo {args.command}` needs a TASK: zoo {args.command} TASK [flags] "
                       f"(tasks: {', '.join(TASKS.list())})")
    COMMANDS.get(args.command)(zoo.get_task(args.task), args.flags)


def user_message(error: BaseException) -> str | None:
    """The one-line message of an error a user can fix, or None for anything else (a bug: traceback)."""
    if isinstance(error, KeyError):
        text = str(error.args[0]) if error.args else ""
        return text if text.startswith("unknown ") else None     # the registries' unknown-name errors
    if isinstance(error, OSError):
        if not isinstance(error, _OS_ERRORS) and error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return None                                           # other OS errors: not the user's to fix
        if error.strerror and error.filename is not None:        # raised by the OS: name the file and the fix
            return f"{error.filename}: {_OS_FIXES.get(error.errno, error.strerror.lower())}"
    elif not isinstance(error, ValueError):
        return None
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``zoo`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return
    if argv[0] in HANDED_OVER:      # their own parsers (and one-line errors) run in the new process
        os.execv(sys.executable, [sys.executable, "-m", HANDED_OVER[argv[0]], *argv[1:]])
    if argv[0] in TASK_COMMANDS and len(argv) > 1 and argv[1].startswith("-") and argv[1] not in ("-h", "--help"):
        parser.error(f"put the TASK before the flags: zoo {argv[0]} TASK [flags] (tasks: {', '.join(TASKS.list())})")
    if argv[0] in OWN_FLAGS:
        args = argparse.Namespace(run=lambda _: COMMANDS.get(argv[0])(argv[1:]))
    else:
        args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.error("give a COMMAND: list, data, weights, train, eval, predict, export, quantize, prune, explain, "
                     "multitask, bench or demo")
    try:
        args.run(args)
    except (KeyError, OSError, ValueError) as error:
        message = user_message(error)
        if message is None or os.environ.get("ZOO_DEBUG", "") not in ("", "0"):
            raise
        print(f"zoo: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


def train_main(task: str, module: str) -> Callable[[list[str] | None], None]:
    """The ``main(argv=None)`` of ``python -m tasks.TASK.train``: ``zoo train TASK`` (its one-line errors too),
    run at once when ``module`` (the caller's ``__name__``) is ``"__main__"``."""
    def train(argv: list[str] | None = None) -> None:
        main(["train", task, *(sys.argv[1:] if argv is None else argv)])

    if module == "__main__":
        train()
    return train


if __name__ == "__main__":
    main()
