"""``python -m benchmarks`` (and ``zoo bench``): every task's benchmark and the backbone suite,
ours and the reference interleaved A B A B ..., written as JSON, Markdown and a PNG chart.

Each row is one pair of workloads (ours, reference) from a task's ``bench_workloads`` or
the backbone suite. Ours, the reference and a plain matmul of the same precision take
turns, one timed block each per round; a row's ratio is the median over rounds of
(ours items/s / reference items/s) within the round, with the min and max as its noise,
and its fraction of matmul FLOP/s is taken per round the same way.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

import zoo
from benchmarks import flops, length_sweep, report
from tasks.engine import bench
from tasks.engine.device import pick_device
from tasks.engine.flags import POSITIVE, POSITIVE_INT
from tasks.engine.precision import AUTO, has_bf16_units, resolve_precision
from tasks.engine.task import Workload
from zoo.cli import ArgumentParser
from zoo.errors import ZooError
from zoo.progress import progress_enabled

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")   # torch.compile's modes
DEFAULT_OUT = Path("bench-results")   # the user's folder; committed figures: --out benchmarks/results
PairSource = Callable[[torch.device, str, bool, bool], list[tuple[Workload, Workload | None]]]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The runner's options (see ``python -m benchmarks --help``)."""
    parser = ArgumentParser(
        prog="python -m benchmarks", formatter_class=argparse.HelpFormatter,
        description="Benchmark every task and the backbone suite against reference libraries, interleaved. "
                    "`python -m benchmarks compare OLD.json NEW.json` flags regressions between two runs.")
    parser.add_argument("names", nargs="*", metavar="TASK", help="tasks to run, as with --task (`zoo bench asr`)")
    parser.add_argument("--task", nargs="+", metavar="NAME", help="only these tasks (implies --suite tasks)")
    parser.add_argument("--suite", choices=("backbones", "tasks", "all", "deploy"),
                        help="what to run (default all; deploy: see benchmarks/deploy.py)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--precision", nargs="+", choices=(*bench.PRECISIONS, AUTO),
                        help="default: fp32 and bf16 on a GPU; on a CPU bf16 only where it has bf16 instructions; "
                             "auto: bf16 on a GPU with bf16 and on a CPU with AMX, else fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile our models and the references")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES,
                        help="torch.compile mode (implies --compile); reduce-overhead replays CUDA graphs (GPU only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last weights (convolutional models)")
    parser.add_argument("--quick", action="store_true", help="a short pass: small shapes, short blocks, 5 rounds")
    parser.add_argument("--threads", type=POSITIVE_INT,
                        help="torch.set_num_threads (1 gives the steadiest CPU figures)")
    parser.add_argument("--rounds", type=POSITIVE_INT, help="alternating rounds per row (default 5 quick, 9 otherwise)")
    parser.add_argument("--block-seconds", type=POSITIVE,
                        help="length of one timed block (default 0.2 s quick, 0.5 s otherwise)")
    parser.add_argument("--warmup", type=POSITIVE_INT, default=3, help="untimed steps before timing (default 3)")
    parser.add_argument("--sweep", action="store_true",
                        help="also sweep the batch size: double until out of memory, then bisect")
    parser.add_argument("--sweep-max", type=POSITIVE_INT,
                        help="largest batch the sweep tries (default 4096 on a GPU, 8x the row's batch on a CPU)")
    parser.add_argument("--sweep-length", nargs="*", metavar="NAME",
                        help="instead of the rows: time batch-1 forwards (and decode steps) as the length grows, "
                             f"fit log-log slopes and plot them; NAME: {', '.join(length_sweep.SWEEPS)} "
                             "(default all; --quick: tiny models and lengths)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"result folder (default {DEFAULT_OUT})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the rounds of each row")
    deploy = parser.add_argument_group("--suite deploy (benchmarks/deploy.py)")
    deploy.add_argument("--runs", type=Path, default=Path("runs/demo"),
                        help="folder of one trained run per task, RUNS/<task> (default runs/demo, as `zoo demo` writes)")
    deploy.add_argument("--variants", nargs="+", metavar="NAME",
                        help="fp32 onnx onnx-int8 int8 pruned distilled (default all)")
    deploy.add_argument("--finetune-steps", type=POSITIVE_INT, default=50, help="fine-tune steps after pruning (default 50)")
    deploy.add_argument("--distill-steps", type=POSITIVE_INT, default=200, help="training steps of the student (default 200)")
    deploy.add_argument("--deploy-batch", type=POSITIVE_INT, default=8, help="batch of the throughput figure (default 8)")
    deploy.add_argument("--decode-tokens", type=POSITIVE_INT, default=32,
                        help="new tokens a generating model decodes per timed step (default 32)")
    args = parser.parse_args(list(argv))
    if args.sweep_length is not None:
        parser.refuse_unknown("sweep", args.sweep_length, length_sweep.SWEEPS)
        args.sweep_length = args.sweep_length or list(length_sweep.SWEEPS)
    args.task = [*args.names, *(args.task or [])] or None
    parser.refuse_unknown("task", args.task or [], zoo.list_tasks())
    args.suite = args.suite or ("tasks" if args.task else "all")
    if args.suite == "deploy":
        from benchmarks.deploy import VARIANTS

        parser.refuse_unknown("variant", args.variants or [], VARIANTS)
        args.variants = args.variants or list(VARIANTS)
    if args.task and args.suite == "backbones":
        parser.error("--task selects tasks; it cannot go with --suite backbones")
    if args.compile_mode is not None:
        args.compile = f"inductor:{args.compile_mode}"
    args.rounds = args.rounds or (5 if args.quick else 9)
    args.block_seconds = args.block_seconds or (0.2 if args.quick else 0.5)
    return args


def check_compile_mode(mode: str | None, device: torch.device) -> None:
    """Refuse ``--compile-mode reduce-overhead`` off a GPU: its CUDA graphs do not exist on a CPU."""
    if mode == "reduce-overhead" and device.type != "cuda":
        raise ValueError(f"--compile-mode reduce-overhead replays CUDA graphs, and the device is {device}; "
                         "use --device cuda, or --compile (default mode) on the CPU")


def default_precisions(device: torch.device) -> list[str]:
    """fp32, plus bf16 on GPUs and on CPUs with bf16 instructions (elsewhere it is emulated, slow)."""
    if device.type == "cuda" or has_bf16_units(device):
        return ["fp32", "bf16"]
    print("note: this CPU has no bf16 instructions (avx512_bf16/amx); bf16 rows skipped "
          "(--precision bf16 runs them anyway)", flush=True)
    return ["fp32"]


def sources(args: argparse.Namespace) -> list[tuple[str, str, PairSource]]:
    """(suite, task name, workload-pair factory) for everything selected."""
    selected: list[tuple[str, str, PairSource]] = []
    if args.suite in ("backbones", "all"):
        from benchmarks import backbones  # imports timm and torchaudio: only when the suite runs

        selected.append(("backbones", "backbones", backbones.workloads))
    if args.suite in ("tasks", "all"):
        for name in args.task or zoo.list_tasks():
            selected.append(("tasks", name, zoo.get_task(name).bench_workloads))
    return selected


def _side(workload: Workload, index: int, rounds: bench.Rounds, warm: bench.WarmUp,
          flops_per_item: float | None, matmul_index: int, device: torch.device, precision: str) -> dict[str, Any]:
    """One side of a row (ours or the reference) from the interleaved rounds."""
    items_per_s, low, high = bench.spread(rounds.of(index))
    flops_per_s = items_per_s * flops_per_item if flops_per_item else None
    fraction = (statistics.median(rounds.ratios(index, matmul_index, (flops_per_item, 1.0)))
                if flops_per_item else None)
    peak = flops.peak_flops(device, precision)
    return {
        "name": workload.name,
        "parameters": bench.parameter_count(workload.model),
        "config": workload.config,
        "items_per_s": items_per_s, "items_per_s_min": low, "items_per_s_max": high,
        "step_s": rounds.median_step_s(index),
        "steps_per_round": rounds.steps[index],
        "peak_memory_bytes": warm.peak_memory_bytes, "memory_kind": warm.memory_kind,
        "flops_per_item": flops_per_item, "flops_per_s": flops_per_s,
        "matmul_fraction": fraction,
        "mfu": flops_per_s / peak if flops_per_s and peak else None,
        "mfu_peak": flops.peak_kind(precision) if peak else None,
    }


def measure_pair(ours: Workload, reference: Workload | None, matmul: Workload, device: torch.device,
                 precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, count FLOPs, then interleave ours / reference / matmul for ``args.rounds`` rounds."""
    if reference is not None and reference.unit != ours.unit:
        raise ValueError(f"{ours.name} counts {ours.unit} but its reference {reference.name} counts {reference.unit}")
    if args.channels_last:
        for workload in (ours, reference):
            if workload is not None and workload.model is not None:
                bench.prepare_model(workload.model, channels_last=True)
    parties = [ours] + ([reference] if reference is not None else []) + [matmul]
    warm = [bench.warm_up(w, device, precision, args.warmup) for w in parties]
    steps = [bench.steps_for(w.step_s, args.block_seconds) for w in warm]
    per_item = [flops.workload_flops_per_item(w, device, precision) for w in parties[:-1]]
    rounds = bench.interleave(parties, steps, args.rounds, device, precision)
    matmul_index = len(parties) - 1
    sides = [_side(w, i, rounds, warm[i], per_item[i], matmul_index, device, precision)
             for i, w in enumerate(parties[:-1])]
    ratios = rounds.ratios(0, 1) if reference is not None else []
    ratio, low, high = bench.spread(ratios) if ratios else (None, None, None)
    return {
        "mode": ours.mode, "unit": ours.unit, "batch_size": ours.batch_size,
        "ours": sides[0], "reference": sides[1] if reference is not None else None,
        "ratio": ratio, "ratio_min": low, "ratio_max": high, "ratios": ratios, "rounds": args.rounds,
        "aim": ours.aim, "differs": ours.differs,
        "matmul": {"name": matmul.name, "flops_per_s": statistics.median(rounds.of(matmul_index))},
    }


def sweep_row(ours: Workload, reference: Workload | None, device: torch.device, precision: str,
              args: argparse.Namespace) -> dict[str, Any]:
    """Batch-size sweeps of the workloads that can be rebuilt at another batch size."""
    result = {}
    for label, workload in (("ours", ours), ("reference", reference)):
        if workload is None or workload.factory is None:
            continue
        limit = args.sweep_max or (4096 if device.type == "cuda" else 8 * workload.batch_size)
        sweep = bench.sweep_batch_size(workload.factory, device, precision, start=workload.batch_size,
                                       max_batch=limit, target_s=args.block_seconds)
        result[label] = asdict(sweep)
    return result


def _describe(row: dict[str, Any]) -> str:
    ours, ref = row["ours"], row["reference"]
    text = f"[{row['precision']}] {row['task']}: {ours['name']} {ours['items_per_s']:.4g} {row['unit']}/s"
    if ref is not None:
        text += (f" vs {ref['name']} {ref['items_per_s']:.4g}: "
                 f"{row['ratio']:.2f}x [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}]")
    if ours["matmul_fraction"] is not None:
        text += f"; {100 * ours['matmul_fraction']:.0f}% of matmul FLOP/s"
    if ours["mfu"] is not None:
        text += f"; MFU {100 * ours['mfu']:.1f}% (of the {ours['mfu_peak']} peak)"
    if report.below_aim(row):
        text += f"; below its {row['aim']:.2f}x aim ({report.why_below(row)})"
    return text


def run_source(suite: str, task: str, make_pairs: PairSource, device: torch.device, precision: str,
               matmul: Workload, args: argparse.Namespace) -> list[dict[str, Any]]:
    """All rows of one task (or the backbone suite) at one precision; failures become error rows."""
    common = {"suite": suite, "task": task, "precision": precision, "compile": args.compile,
              "channels_last": args.channels_last}
    try:
        pairs = make_pairs(device, precision, args.quick, args.compile)
    except Exception as error:  # one broken task must not hide every other row
        traceback.print_exc()
        return [{**common, "ours": {"name": "(workloads)"}, "reference": None, "error": repr(error)}]
    rows = []
    for ours, reference in pairs:
        try:
            row = {**common, **measure_pair(ours, reference, matmul, device, precision, args)}
            if args.sweep:
                row["sweep"] = sweep_row(ours, reference, device, precision, args)
            print(_describe(row), flush=True)
        except Exception as error:
            traceback.print_exc()
            row = {**common, "mode": ours.mode, "ours": {"name": ours.name},
                   "reference": {"name": reference.name} if reference else None, "error": repr(error)}
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks`` and ``zoo bench``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return report.compare_main(argv[1:])
    args = parse_args(argv)
    try:
        bench.set_threads(args.threads)
        device = pick_device(args.device)
        check_compile_mode(args.compile_mode, device)
    except (RuntimeError, ValueError) as error:
        print(f"python -m benchmarks: error: {error}", file=sys.stderr)
        return 2
    if args.suite == "deploy":
        from benchmarks import deploy

        try:
            with progress_enabled(not args.no_progress):
                return deploy.run(args, report.machine_info, report.write_json, report.result_stem)
        except ZooError as error:
            print(f"python -m benchmarks: error: {error}", file=sys.stderr)
            return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    asked = args.precision or default_precisions(device)
    precisions = list(dict.fromkeys(resolve_precision(p, device, bench.PRECISIONS) for p in asked))
    if args.sweep_length is not None:
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        sizes = length_sweep.TINY if args.quick else length_sweep.FULL
        with progress_enabled(not args.no_progress):
            written = length_sweep.run(args.sweep_length, device, precisions if args.precision else ["fp32"], args.out,
                                       sizes, options)
        print("wrote " + ", ".join(str(p) for p in written))
        return 0
    selected = sources(args)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with progress_enabled(not args.no_progress):
        for precision in precisions:
            matmul = flops.matmul_workload(device, precision, flops.matmul_size(device, args.quick))
            for suite, task, make_pairs in selected:
                torch.manual_seed(0)
                rows.extend(run_source(suite, task, make_pairs, device, precision, matmul, args))
    machine = report.machine_info(device)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    options["seconds"] = round(time.perf_counter() - started, 1)
    written = report.write_outputs(args.out, machine, rows, options)
    print()
    print(report.markdown(machine, rows))
    print("wrote " + ", ".join(str(p) for p in written))
    return 1 if any(row.get("error") for row in rows) else 0
