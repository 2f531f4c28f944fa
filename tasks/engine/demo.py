"""`zoo demo` / `make demo`: train and evaluate every task briefly on its quickest built-in set,
score each task's baseline on the same split, run the quick benchmark, and end with one table of
metrics, baselines and throughput."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zoo
from tasks.engine.flags import POSITIVE
from tasks.engine.task import Metric
from zoo.cli import ArgumentParser

# what a baseline's data, fitting or scoring may raise (ZooError is a ValueError; no scikit-learn: ImportError)
BASELINE_FAILURES = (ValueError, OSError, RuntimeError, ImportError)


def run_task(name: str, out: Path, budget: float, seed: int = 0) -> dict[str, Any]:
    """Train ``name`` for ``budget`` seconds (``seed``) on its quick set, then evaluate the test split."""
    task = zoo.get_task(name)
    run_dir = out / name
    started = time.perf_counter()
    task.command("train", ["--data", task.quick_data, "--time-budget", str(budget), "--out", str(run_dir),
                           "--seed", str(seed), "--no-progress", *task.demo_args])
    trained = time.perf_counter() - started
    metrics = task.command("eval", ["--checkpoint", str(run_dir), "--data", task.quick_data])
    return {"task": name, "data": task.quick_data, "metric": task.metric.name,
            "value": metrics[task.metric.name], "higher_is_better": task.metric.higher_is_better,
            "train_s": trained, "n": metrics["n"]}


def run_baseline(name: str) -> dict[str, Any]:
    """``name``'s baseline (:meth:`Task.baseline`) fit on its quick set's train split and scored on its test
    split, as ``zoo eval`` scored the model: ``baseline`` (its name), ``baseline_value``, ``baseline_s``."""
    task = zoo.get_task(name)
    started = time.perf_counter()
    found = task.baseline(task.datasets(task.quick_data, "train"), task.datasets(task.quick_data, "test"))
    seconds = time.perf_counter() - started
    if found is None:
        return {}
    value = found.metrics[task.metric.name]
    print(f"{name}: baseline {found.name}: {task.metric.name} {value:.4f} ({seconds:.1f} s)", flush=True)
    return {"baseline": found.name, "baseline_value": value, "baseline_s": seconds}


def beats_baseline(result: dict[str, Any]) -> str:
    """"yes" or "no": whether the model's value is better than its baseline's; "-" without both."""
    value, baseline = result.get("value"), result.get("baseline_value")
    if not isinstance(value, float) or not isinstance(baseline, float):
        return "-"
    return "yes" if Metric(result["metric"], result["higher_is_better"]).better(value, baseline) else "no"


def run_bench(out: Path) -> list[dict[str, Any]]:
    """`python -m benchmarks --quick` into ``out``; its rows (empty when it failed)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--threads", "1", "--rounds", "3",
                    "--out", str(out)], check=False)
    results = sorted(out.glob("*.json"))
    return json.loads(results[-1].read_text())["rows"] if results else []


def shown(value: Any) -> str:
    """A metric's value for the table: four decimals for a number, else as it is."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def baseline_cell(result: dict[str, Any]) -> str:
    """The baseline's name and value ("-" when none ran; a failed one's error alone)."""
    if "baseline" not in result:
        return "-"
    value = result.get("baseline_value")
    return result["baseline"] if value is None else f"{result['baseline']} {shown(value)}"


def table(results: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """One Markdown table: each task's metric, its baseline's, and its benchmark throughput and ratio."""
    lines = [("| task | data | metric | value | baseline | beats baseline | train s | benchmark (ours) | "
              "ratio vs reference |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        bench_rows = [r for r in rows if r.get("task") == result["task"] and r.get("ours")]
        if bench_rows:
            first = bench_rows[0]
            speed = f"{first['ours']['items_per_s']:.4g} {first['unit']}/s ({first['ours']['name']})"
            ratio = f"{first['ratio']:.2f}x {first['reference']['name']}" if first.get("ratio") else "-"
        else:
            speed = ratio = "-"
        lines.append(f"| {result['task']} | {result['data']} | {result['metric']} | {shown(result.get('value'))} | "
                     f"{baseline_cell(result)} | {beats_baseline(result)} | {result.get('train_s', 0):.0f} | {speed} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`zoo demo [--budget SECONDS] [--task NAME ...] [--seed N] [--out DIR] [--no-baseline] [--no-bench]`."""
    parser = ArgumentParser(prog="zoo demo", description="Train, evaluate, score a baseline for and benchmark every task briefly.")
    parser.add_argument("--budget", type=POSITIVE, default=30.0,
                        help="training seconds per task (30: eight tasks, setup and benchmark in 15 minutes)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder of the runs and the benchmark")
    parser.add_argument("--task", nargs="+", help="only these tasks")
    parser.add_argument("--seed", type=int, default=0, help="every task's training seed (the README's table: 0, 1, 2)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip each task's baseline (fit on the quick set's train split, scored on its test split)")
    parser.add_argument("--no-bench", action="store_true", help="skip the quick benchmark")
    args = parser.parse_args(argv)
    parser.refuse_unknown("task", args.task or [], zoo.list_tasks())
    results = []
    for name in args.task or zoo.list_tasks():
        print(f"\n=== {name}: training for {args.budget:.0f} s on its quick built-in set ===", flush=True)
        try:
            result = run_task(name, args.out, args.budget, args.seed)
        except Exception as err:  # one task failing must not hide the others' results
            print(f"{name}: demo failed: {err}", file=sys.stderr)
            results.append({"task": name, "data": "-", "metric": "error", "value": str(err)[:60]})
            continue
        if not args.no_baseline:
            try:
                result.update(run_baseline(name))
            except BASELINE_FAILURES as err:  # nor must a baseline failing hide its model's result
                print(f"{name}: baseline failed: {err}", file=sys.stderr)
                result["baseline"] = f"error: {str(err)[:40]}"
        results.append(result)
    rows = [] if args.no_bench else run_bench(args.out / "bench")
    print("\n" + table(results, rows))
    if any(r["metric"] == "error" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
