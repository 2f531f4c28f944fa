"""The Markdown table of the deploy suite (:mod:`benchmarks.deploy`): one row per task and variant."""
from __future__ import annotations

from typing import Any


def _ratio(cell: dict[str, Any] | None) -> str:
    """``1.23x [1.1-1.3]`` (variant / fp32 items/s), ``1x`` for fp32 itself."""
    if cell is None:
        return "1x"
    return f"{cell['ratio']:.2f}x [{cell['ratio_min']:.2f}-{cell['ratio_max']:.2f}]"


def _milliseconds(cell: dict[str, Any] | None, fp32_ms: float | None) -> str:
    if cell is not None:
        return f"{1e3 * cell['step_s']:.2f}"
    return "-" if fp32_ms is None else f"{fp32_ms:.2f}"


def fp32_latency_ms(rows: list[dict[str, Any]], task: str) -> float | None:
    """The median over the task's comparisons of fp32 PyTorch's batch-1 step, in ms."""
    steps = sorted(r["batch1"]["baseline_step_s"] for r in rows
                   if r["task"] == task and not r.get("error") and r.get("batch1"))
    return 1e3 * steps[len(steps) // 2] if steps else None


def _decode_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per speed other than the forward (generating tasks: decoding), naming its tasks."""
    tasks: dict[str, list[str]] = {}
    for row in rows:
        speed = row.get("speed", "forward")
        if speed != "forward" and row["task"] not in tasks.setdefault(speed, []):
            tasks[speed].append(row["task"])
    return [f"Speed of {', '.join(names)}: {speed} (Batch-1 ms: one such generation), every variant alike."
            for speed, names in tasks.items()]


def markdown(machine: dict[str, Any], rows: list[dict[str, Any]], options: dict[str, Any]) -> str:
    """The suite's table: size, batch-1 latency, speed ratios to fp32 PyTorch and the metric per variant."""
    lines = [
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores, {machine['torch_threads']} "
        f"torch threads; onnxruntime as many), torch {machine['versions'].get('torch')}, commit "
        f"{(machine['commit'] or 'none')[:10]}. Speed: forward of a collated test batch, variant / fp32 PyTorch "
        f"items/s, median of {options['rounds']} interleaved rounds [min-max]; batched = {options['deploy_batch']}.",
        *_decode_notes(rows),
        "",
        "| Task | Variant | MB | fp32 MB / MB | Batch-1 ms | Batch-1 speed | Batched speed | Metric | vs fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {r["task"]: r for r in rows if r["variant"] == "fp32" and not r.get("error")}
    for row in rows:
        note = f" ({row['note']})" if row.get("note") else ""
        name = f"| {row['task']} | {row['variant']}{note} |"
        if row.get("error"):
            lines.append(f"{name} not made: {row['error'][:160]} | | | | | | |")
            continue
        fp32 = base.get(row["task"])
        size = f"{fp32['megabytes'] / row['megabytes']:.2f}" if fp32 else "-"
        scored = row["metric"] is not None and fp32 is not None and fp32["metric"] is not None
        change = f"{row['metric'] - fp32['metric']:+.3g}" if scored else "-"
        metric = (f"{row['metric_name']} {row['metric']:.4g}" if row["metric"] is not None
                  else f"not scored: {row['metric_error'][:80]}")
        lines.append(f"{name} {row['megabytes']:.2f} | {size} | {_milliseconds(row['batch1'], fp32_latency_ms(rows, row['task']))} "
                     f"| {_ratio(row['batch1'])} | {_ratio(row['batched'])} | {metric} "
                     f"| {change} |")
    return "\n".join(lines) + "\n"
