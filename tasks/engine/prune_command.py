"""`zoo prune TASK --checkpoint DIR --amount 0.3 [--structured heads|mlp|both|none] [--magnitude-scope
global|layer] --out DIR` (issue 14).

Loads the checkpoint, prunes it with :mod:`zoo.pruning` (structured: whole heads and MLP channels
removed, ``config.json`` records ``layer_heads`` and ``layer_mlp``; ``none``: magnitude pruning, the
weights ranked over all layers or in each (``--magnitude-scope``), with its sparsity reported),
fine-tunes the pruned model for ``--finetune-steps`` steps on ``--data`` through the shared trainer
(the run folder is ``OUT/finetune``; magnitude-pruned weights stay zero) and saves the result as a
model folder in ``--out`` with ``prune.json`` describing it.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import zoo
from tasks.engine.commands import checkpoint_folder, command_parser
from tasks.engine.data import parse_spec
from tasks.engine.export_command import new_folder
from tasks.engine.flags import COUNT, DEVICE_HELP, DEVICES, DROP_FRACTION, POSITIVE
from tasks.engine.task import Task
from zoo.cli import ArgumentParser
from zoo.errors import ZooError
from zoo.pruning import SCOPES, STRUCTURES, PruneReport, keep_masks, prune_model, sparsity
from zoo.registry import COMMANDS

REPORT = "prune.json"
FINETUNE_RUN = "finetune"


def prune(task: Task, checkpoint: str, amount: float, out: str | Path, structured: str = "both",
          finetune_steps: int = 100, data: str = "builtin", finetune_lr: float | None = None,
          device: str = "auto", seed: int = 0, progress: bool = True,
          magnitude_scope: str | None = None) -> tuple[Path, PruneReport]:
    """Prune ``task``'s model in ``checkpoint`` by ``amount``, fine-tune it ``finetune_steps`` steps on
    ``data`` (0: none) with ``finetune_lr`` (default: a tenth of the task's ``--lr`` default) and save
    it in ``out``; returns (``out``, the report). ``magnitude_scope`` (``--structured none`` only,
    default ``global``) ranks the weights over all layers or in each. Everything is checked before
    the model is loaded."""
    if structured not in STRUCTURES:
        raise ZooError(f"--structured {structured}: unknown; use one of {', '.join(STRUCTURES)}")
    if magnitude_scope is not None and structured != "none":
        raise ZooError("--magnitude-scope applies to --structured none (magnitude pruning); drop it or pass "
                       "--structured none")
    if magnitude_scope is not None and magnitude_scope not in SCOPES:
        raise ZooError(f"--magnitude-scope {magnitude_scope}: unknown; use one of {', '.join(SCOPES)}")
    if not 0.0 <= amount < 1.0:
        raise ZooError(f"--amount {amount}: give the fraction to remove, in [0, 1)")
    out = new_folder(out)
    parse_spec(data)
    folder = checkpoint_folder(task, checkpoint, "prune")
    model, report, masks = prune_model(zoo.load(folder), amount, structured, magnitude_scope or "global")
    if finetune_steps > 0:
        from tasks.engine.trainer import train

        args = _finetune_args(task, out / FINETUNE_RUN, data, finetune_steps, finetune_lr, device, seed, progress)
        keep_masks(model, masks)
        run = train(task, args, model=model)
        model = zoo.load(run)
        if report.sparsity is not None:     # the masks held: the same zeros, measured on what is saved
            report.sparsity = sparsity(model)
    model.save(out)
    (out / REPORT).write_text(json.dumps({**asdict(report), "checkpoint": str(folder), "finetune_steps": finetune_steps,
                                          "data": data}, indent=1) + "\n")
    return out, report


def _finetune_args(task: Task, run: Path, data: str, steps: int, lr: float | None, device: str, seed: int,
                   progress: bool) -> Any:
    """The `zoo train TASK` flags of the fine-tune: the task's defaults, ``steps`` steps, evaluated at the end."""
    parser = command_parser("train", task)
    args = parser.parse_args(["--data", data, "--out", str(run), "--max-steps", str(steps), "--device", device,
                              "--seed", str(seed), "--eval-every", "0", *([] if progress else ["--no-progress"])])
    args.lr = lr if lr is not None else parser.get_default("lr") / 10
    return args


def prune_parser(task: Task | None = None) -> ArgumentParser:
    """The parser of ``zoo prune TASK``."""
    parser = ArgumentParser(prog=f"zoo prune {task.name if task else 'TASK'}",
                            description="Remove attention heads and MLP channels (smaller matrices) or zero the "
                                        "smallest weights, then fine-tune briefly with the shared trainer.")
    g = parser.add_argument_group("prune")
    g.add_argument("--checkpoint", required=True, metavar="DIR", help="run folder (its best) or model folder")
    g.add_argument("--amount", type=DROP_FRACTION, default=0.3, help="fraction of heads/channels (or weights) to remove")
    g.add_argument("--structured", choices=STRUCTURES, default="both",
                   help="heads, mlp channels, both, or none (unstructured magnitude pruning)")
    g.add_argument("--magnitude-scope", choices=SCOPES, default=None,
                   help="--structured none: rank the weights over all layers (global, the default) or in each "
                        "(layer: every layer loses --amount of its weights)")
    g.add_argument("--out", required=True, metavar="DIR", help="new folder for the pruned model and prune.json")
    g.add_argument("--finetune-steps", type=COUNT, default=100, metavar="N", help="fine-tune steps (0: none)")
    g.add_argument("--finetune-lr", type=POSITIVE, default=None, metavar="LR",
                   help="fine-tune peak learning rate (default: a tenth of the task's --lr default)")
    g.add_argument("--data", default="builtin", metavar="SPEC", help="fine-tune data SPEC")
    g.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    g.add_argument("--seed", type=int, default=0, help="seed of the fine-tune")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


@COMMANDS.register("prune", parser=prune_parser)
def prune_command(task: Task, argv: list[str]) -> Path:
    """``zoo prune TASK --checkpoint DIR --amount A [--structured S] --out DIR``."""
    args = prune_parser(task).parse_args(argv)
    out, report = prune(task, args.checkpoint, args.amount, args.out, args.structured, args.finetune_steps,
                        args.data, args.finetune_lr, args.device, args.seed, progress=not args.no_progress,
                        magnitude_scope=args.magnitude_scope)
    kept = f"sparsity {report.sparsity:.3f} ({report.scope})" if report.sparsity is not None else \
        f"heads per layer {report.layer_heads}, MLP widths {report.layer_mlp}"
    print(f"pruned {args.checkpoint} ({args.structured}, amount {args.amount}): {report.parameters_before:,} -> "
          f"{report.parameters_after:,} parameters, {kept}; saved to {out}")
    return out
