"""`zoo demo` / `make demo`: train and evaluate every task briefly on its quickest built-in set,
run the quick benchmark, and end with one table of metrics and throughput."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zoo
from tasks.engine.flags import POSITIVE
from zoo.cli import ArgumentParser


def run_task(name: str, out: Path, budget: float) -> dict[str, Any]:
    """Train ``name`` for ``budget`` seconds on its quick set, then evaluate the test split."""
    task = zoo.get_task(name)
    run_dir = out / name
    started = time.perf_counter()
    task.command("train", ["--data", task.quick_data, "--time-budget", str(budget), "--out", str(run_dir),
                           "--no-progress", *task.demo_args])
    trained = time.perf_counter() - started
    metrics = task.command("eval", ["--checkpoint", str(run_dir), "--data", task.quick_data])
    return {"task": name, "data": task.quick_data, "metric": task.metric.name,
            "value": metrics[task.metric.name], "higher_is_better": task.metric.higher_is_better,
            "train_s": trained, "n": metrics["n"]}


def run_bench(out: Path) -> list[dict[str, Any]]:
    """`python -m benchmarks --quick` into ``out``; its rows (empty when it failed)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--threads", "1", "--rounds", "3",
                    "--out", str(out)], check=False)
    results = sorted(out.glob("*.json"))
    return json.loads(results[-1].read_text())["rows"] if results else []


def table(results: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """One Markdown table: each task's metric and its benchmark throughput and ratio."""
    lines = ["| task | data | metric | value | train s | benchmark (ours) | ratio vs reference |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        bench_rows = [r for r in rows if r.get("task") == result["task"] and r.get("ours")]
        if bench_rows:
            first = bench_rows[0]
            speed = f"{first['ours']['items_per_s']:.4g} {first['unit']}/s ({first['ours']['name']})"
            ratio = f"{first['ratio']:.2f}x {first['reference']['name']}" if first.get("ratio") else "-"
        else:
            speed = ratio = "-"
        value = result.get("value")
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"| {result['task']} | {result['data']} | {result['metric']} | {shown} | "
                     f"{result.get('train_s', 0):.0f} | {speed} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`zoo demo [--budget SECONDS] [--task NAME ...] [--out DIR] [--no-bench]`."""
    parser = ArgumentParser(prog="zoo demo", description="Train, evaluate and benchmark every task briefly.")
    parser.add_argument("--budget", type=POSITIVE, default=30.0,
                        help="training seconds per task (30: eight tasks, setup and benchmark in 15 minutes)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder of the runs and the benchmark")
    parser.add_argument("--task", nargs="+", help="only these tasks")
    parser.add_argument("--no-bench", action="store_true", help="skip the quick benchmark")
    args = parser.parse_args(argv)
    parser.refuse_unknown("task", args.task or [], zoo.list_tasks())
    results = []
    for name in args.task or zoo.list_tasks():
        print(f"\n=== {name}: training for {args.budget:.0f} s on its quick built-in set ===", flush=True)
        try:
            results.append(run_task(name, args.out, args.budget))
        except Exception as err:  # one task failing must not hide the others' results
            print(f"{name}: demo failed: {err}", file=sys.stderr)
            results.append({"task": name, "data": "-", "metric": "error", "value": str(err)[:60]})
    rows = [] if args.no_bench else run_bench(args.out / "bench")
    print("\n" + table(results, rows))
    if any(r["metric"] == "error" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
