"""Benchmark outputs: the machine description, the JSON result file, the Markdown table,
the PNG chart of ratios, and the comparison of two result files (``python -m benchmarks compare``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch

from tasks.engine.precision import has_bf16_units

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "timm", "torchaudio", "torchvision", "transformers")
FORMAT_VERSION = 1


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where and with what a run was measured: CPU, cores, threads, GPU, library versions, commit, date."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": has_bf16_units(torch.device("cpu")),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "tf32": ({"matmul": torch.get_float32_matmul_precision() != "highest",
                  "cudnn": torch.backends.cudnn.allow_tf32} if device.type == "cuda" else None),
        "device": str(device),
        "versions": {name: _version(name) for name in LIBRARIES},
        "python": platform.python_version(),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def result_stem(machine: dict[str, Any]) -> str:
    """``<date>-<HHMMSS>-<device>``: e.g. ``2025-01-31-142501-cpu``; runs of one day do not overwrite each other."""
    device = machine["gpu"] or machine["device"].split(":")[0]
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    return f"{machine['date'][:10]}-{machine['date'][11:19].replace(':', '')}-{slug}"


def write_json(path: Path, machine: dict[str, Any], rows: list[dict[str, Any]], options: dict[str, Any]) -> None:
    """Write one run's result file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT_VERSION, "machine": machine, "options": options, "rows": rows}
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """Read a result file; a file that is not one raises naming it."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable benchmark result file ({error})") from None
    if not isinstance(payload, dict) or "rows" not in payload or "machine" not in payload:
        raise ValueError(f"{path}: not a benchmark result file (no 'machine' and 'rows')")
    return payload


# ---- Markdown ------------------------------------------------------------------------------------

def _si(value: float | None, digits: int = 3) -> str:
    """1234567 -> '1.23M'; None -> '-'."""
    if value is None:
        return "-"
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{suffix}"
    return f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _side(side: dict[str, Any] | None, unit: str) -> str:
    if side is None:
        return "-"
    return f"{_si(side['items_per_s'])} {unit}/s"


def markdown(machine: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The run as a Markdown table, with the machine named above it."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    where = machine["gpu"] or f"{machine['cpu']} ({machine['cores']} cores, {machine['torch_threads']} threads)"
    lines = [
        f"Measured {machine['date']} on {where}; {versions}; commit {machine['commit'] or 'none'}.",
        "Ratio = ours / reference items/s, median of alternating rounds (min-max in brackets).",
        "",
        "| Task | Mode | Prec. | Ours (params) | Reference | Batch | Ours | Reference | Ratio | Step | "
        "Peak mem | FLOP/item | FLOP/s | of matmul | MFU |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, ref = row["ours"], row.get("reference")
        if row.get("error"):
            lines.append(f"| {row['task']} | {row.get('mode', '-')} | {row['precision']} | {ours['name']} | "
                         f"{ref['name'] if ref else '-'} | | | | error: {row['error'][:80]} | | | | | | |")
            continue
        ratio = "-" if row["ratio"] is None else (
            f"{row['ratio']:.2f}x [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}]")
        reference = f"{ref['name']}" if ref else "-"
        lines.append(
            f"| {row['task']} | {row['mode']} | {row['precision']}{' compiled' if row['compile'] else ''} | "
            f"{ours['name']} ({_si(ours['parameters'])}) | {reference} | {row['batch_size']} | "
            f"{_side(ours, row['unit'])} | {_side(ref, row['unit'])} | {ratio} | {1e3 * ours['step_s']:.1f} ms | "
            f"{ours['peak_memory_bytes'] / 2 ** 20:.0f} MiB | {_si(ours['flops_per_item'])} | "
            f"{_si(ours['flops_per_s'])} | {_percent(ours['matmul_fraction'])} | {_mfu(ours)} |")
    lines.extend(_below_aim_lines(rows))
    lines.extend(_sweep_lines(rows))
    return "\n".join(lines) + "\n"


def below_aim(row: dict[str, Any]) -> bool:
    """Whether a measured pair's ratio is under its ``aim`` (rows without a ratio or an aim are not)."""
    return row.get("ratio") is not None and row.get("aim") is not None and row["ratio"] < row["aim"]


def why_below(row: dict[str, Any]) -> str:
    """What the row says of its two sides: how they differ in kind, or that they do the same work."""
    return row.get("differs") or "same work on both sides"


def _below_aim_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row under its aim: the ratio, the aim and why (the pair's ``differs``)."""
    lines = [f"- {row['task']}: {row['ours']['name']} vs {row['reference']['name']} [{row['mode']}, "
             f"{row['precision']}, batch {row['batch_size']}]: {row['ratio']:.2f}x, aim {row['aim']:.2f}x; "
             f"{why_below(row)}" for row in rows if below_aim(row)]
    return ["", "Rows below their aim:", *lines] if lines else []


def _mfu(side: dict[str, Any]) -> str:
    """MFU with the peak it divides by (``41% tf32``); ``-`` without one (CPUs, unknown GPUs)."""
    if side.get("mfu") is None:
        return "-"
    return f"{_percent(side['mfu'])} {side.get('mfu_peak') or ''}".strip()


def _sweep_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Batch-size sweeps: the largest batch that fits, why the sweep stopped, the throughput curve."""
    lines = []
    for row in rows:
        for label, sweep in (row.get("sweep") or {}).items():
            name = row[label]["name"]
            curve = ", ".join(f"{p['batch_size']}: {_si(p['items_per_s'])}" if p["fits"] else
                              f"{p['batch_size']}: OOM" for p in sweep["points"])
            lines.append(f"- sweep {row['task']} {name} [{row['precision']}]: largest batch {sweep['largest']} "
                         f"(stopped by {sweep['stopped_by']}); {row['unit']}/s by batch: {curve}")
    return ["", *lines] if lines else []


# ---- chart ---------------------------------------------------------------------------------------

def ratio_label(row: dict[str, Any]) -> str:
    """One chart row's label: task, what is compared, mode, precision and batch (unique per row)."""
    return (f"{row['task']}: {row['ours']['name']} vs {row['reference']['name']} "
            f"[{row['mode']}, {row['precision']}, batch {row['batch_size']}]")


def plot_ratios(path: Path, machine: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Ours/reference ratios as horizontal bars on a log axis (a 33x row and a 0.9x row both
    readable) with min-max whiskers and a line at 1.0; one bar per (task, comparison, mode,
    precision, batch). False if no row has a ratio."""
    rated = [r for r in rows if r.get("ratio") is not None]
    if not rated:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogFormatter

    ratios = [r["ratio"] for r in rated]
    low = [r["ratio"] - r["ratio_min"] for r in rated]
    high = [r["ratio_max"] - r["ratio"] for r in rated]
    fig = Figure(figsize=(12, 1.4 + 0.32 * len(rated)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colors = ["tab:green" if value >= 1.0 else "tab:red" for value in ratios]
    # bars grow from 1.0 (parity): right for faster, left for slower
    ax.barh(range(len(rated)), [r - 1.0 for r in ratios], left=1.0, xerr=[low, high], color=colors, capsize=3)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    plain = FuncFormatter(lambda value, _: f"{value:g}")     # 0.9, 1, 2, 30: no powers of ten
    span = max([1.0, *(r["ratio_max"] for r in rated)]) / min([1.0, *(r["ratio_min"] for r in rated)])
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain if span < 10 else LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
    ax.set_yticks(range(len(rated)), [ratio_label(r) for r in rated], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ours / reference items/s, log scale (median of alternating rounds, min-max whiskers)")
    ax.set_title(f"{machine['gpu'] or machine['cpu']} ({machine['device']}), {machine['date'][:10]}: "
                 f"ratio > 1 means ours is faster", fontsize=9, wrap=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return True


def write_outputs(out_dir: Path, machine: dict[str, Any], rows: list[dict[str, Any]],
                  options: dict[str, Any]) -> list[Path]:
    """Write ``<date>-<device>.json``, ``.md`` and ``.png`` (when a row has a ratio) under ``out_dir``."""
    stem = Path(out_dir) / result_stem(machine)
    written = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    write_json(written[0], machine, rows, options)
    written[1].write_text(markdown(machine, rows), encoding="utf-8")
    if plot_ratios(stem.with_suffix(".png"), machine, rows):
        written.append(stem.with_suffix(".png"))
    return written


# ---- comparison ----------------------------------------------------------------------------------

def row_key(row: dict[str, Any]) -> tuple:
    """What identifies a row across runs."""
    reference = row.get("reference")
    return (row["task"], row.get("mode"), row["ours"]["name"], reference["name"] if reference else None,
            row["precision"], bool(row.get("compile")), row.get("batch_size"))


def _same_machine(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("cpu", "gpu", "device", "torch_threads")
    return all(old["machine"].get(k) == new["machine"].get(k) for k in keys)


def _drop(old_value: float, old_low: float, old_high: float, new_value: float, new_low: float,
          new_high: float, tolerance: float) -> bool:
    """True when ``new`` is below ``old`` by more than both runs' half-spreads plus ``tolerance``."""
    noise = (old_high - old_low) / 2 + (new_high - new_low) / 2 + tolerance * abs(old_value)
    return new_value < old_value - noise


def compare(old: dict[str, Any], new: dict[str, Any], tolerance: float = 0.02) -> tuple[list[str], list[str]]:
    """(regressions, notes) between two result files.

    A regression: a row's ratio (or, on the same machine, its items/s) fell by more than the
    noise seen in the repetitions of both runs (half of each min-max spread) plus
    ``tolerance`` of the old value; or a row that worked now fails. Rows in only one file
    are notes.
    """
    regressions, notes = [], []
    new_rows = {row_key(r): r for r in new["rows"]}
    same_machine = _same_machine(old, new)
    if not same_machine:
        notes.append("different machines: only ratios are compared, not absolute items/s")
    for key, before in ((row_key(r), r) for r in old["rows"]):
        label = f"{before['task']}: {before['ours']['name']} [{before['precision']}]"
        after = new_rows.pop(key, None)
        if after is None:
            notes.append(f"{label}: not in the new file")
        elif after.get("error") and not before.get("error"):
            regressions.append(f"{label}: now fails: {after['error']}")
        elif before.get("error") or after.get("error"):
            continue
        else:
            if before["ratio"] is not None and after["ratio"] is not None and _drop(
                    before["ratio"], before["ratio_min"], before["ratio_max"],
                    after["ratio"], after["ratio_min"], after["ratio_max"], tolerance):
                regressions.append(f"{label}: ratio {before['ratio']:.3f} -> {after['ratio']:.3f} "
                                   f"(spreads {before['ratio_min']:.3f}-{before['ratio_max']:.3f} and "
                                   f"{after['ratio_min']:.3f}-{after['ratio_max']:.3f})")
            o, n = before["ours"], after["ours"]
            if same_machine and _drop(o["items_per_s"], o["items_per_s_min"], o["items_per_s_max"],
                                      n["items_per_s"], n["items_per_s_min"], n["items_per_s_max"], tolerance):
                regressions.append(f"{label}: {o['items_per_s']:.4g} -> {n['items_per_s']:.4g} "
                                   f"{before['unit']}/s")
    notes.extend(f"{r['task']}: {r['ours']['name']} [{r['precision']}]: new row" for r in new_rows.values())
    return regressions, notes


def compare_main(argv: Sequence[str]) -> int:
    """``python -m benchmarks compare OLD.json NEW.json``: exit status 1 when anything regressed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks compare",
                                     description="Flag regressions between two benchmark result files.")
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="allowed drop beyond the measured noise, as a fraction of the old value")
    args = parser.parse_args(list(argv))
    regressions, notes = compare(read_json(args.old), read_json(args.new), args.tolerance)
    for note in notes:
        print(f"note: {note}")
    for regression in regressions:
        print(f"REGRESSION: {regression}")
    print(f"{len(regressions)} regression(s) between {args.old} and {args.new}")
    return 1 if regressions else 0
