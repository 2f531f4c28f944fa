"""``python -m benchmarks --sweep-length [text|image|audio|decode ...]``: cost as the work grows.

Each curve times one workload at growing lengths, batch 1: a RoPE text decoder's forward and
training step (64 -> 4096 tokens), the GPT-2-small shape's forward (64 -> 1024 positions), a
ViT-Ti forward (224 -> 640 px), the speech encoder's forward (2 -> 32 s) and batch-1 decode at
the GPT-2 shape with and without the KV cache (context 64 -> 1024). A point is the median of
several single-step timed blocks (:func:`tasks.engine.bench.time_block`), fewer at long lengths.

Every curve is fitted as ``t = c * n^k`` (least squares of log t on log n) over the whole range
and over its upper half, where attention's O(n^2) overtakes the O(n) rest; ``n`` is the
sequence length attention sees (tokens, image patches + class token, audio encoder frames,
decode context), so a slope of 1 is linear and 2 quadratic.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import zoo
from benchmarks import report
from tasks.engine import bench
from tasks.engine.task import Workload
from tasks.text_generation.bench import GPT2, Shape, decode_steps

SWEEPS = ("text", "image", "audio", "decode")
POINT_SECONDS = 3.0            # timed seconds aimed at per point; at least MIN_REPEATS blocks, at most MAX_REPEATS
MIN_REPEATS, MAX_REPEATS = 3, 9
CACHED_NEW_TOKENS = 8          # decode steps per timed block with the cache (per-token time = block / 8)


@dataclass(frozen=True)
class Sizes:
    """Models and lengths of every sweep (:data:`FULL`, or :data:`TINY` for a fast check)."""

    rope: dict[str, Any]             # text_decoder_small overrides
    text_lengths: tuple[int, ...]
    gpt2: dict[str, Any]             # text_decoder_gpt2 overrides (vocab_size, dim, depth, heads, max_len)
    gpt2_lengths: tuple[int, ...]
    vit: dict[str, Any]              # vit_tiny overrides
    image_sizes: tuple[int, ...]
    speech: dict[str, Any]           # speech_encoder_small overrides
    audio_seconds: tuple[float, ...]
    decode_contexts: tuple[int, ...]
    point_seconds: float = POINT_SECONDS


FULL = Sizes(rope={}, text_lengths=tuple(2 ** k for k in range(6, 13)),
             gpt2={}, gpt2_lengths=tuple(2 ** k for k in range(6, 11)),
             vit={}, image_sizes=(224, 288, 384, 512, 640),
             speech={}, audio_seconds=(2, 4, 8, 16, 32),
             decode_contexts=tuple(2 ** k for k in range(6, 11)))
TINY = Sizes(rope=dict(vocab_size=64, dim=32, depth=1, heads=2), text_lengths=(16, 32, 64),
             gpt2=dict(vocab_size=64, dim=32, depth=1, heads=2, max_len=64), gpt2_lengths=(16, 32, 64),
             vit=dict(dim=32, depth=1, heads=2), image_sizes=(32, 48, 64),
             speech=dict(dim=32, depth=1, heads=2), audio_seconds=(0.5, 1.0),
             decode_contexts=(16, 32, 64), point_seconds=0.05)


@dataclass(frozen=True)
class Curve:
    """One line of the plot: ``build(value)`` gives the workload and the length ``n`` attention sees."""

    sweep: str                        # one of SWEEPS
    label: str
    unit: str                         # what one step's time is per: "forward", "step", "token"
    values: tuple[float, ...]         # the swept quantity (tokens, px, seconds, context)
    value_unit: str
    build: Callable[[float], tuple[Workload, int]]


# ---- workloads ---------------------------------------------------------------------------------

def _forward(name: str, fn: Callable[..., Any], inputs: tuple[Any, ...], model: torch.nn.Module) -> Workload:
    """One forward ``fn(*inputs)`` per step."""
    return Workload(name, "forwards", 1, lambda: fn(*inputs), model, "inference", 1)


def _tokens(length: int, vocab: int, device: torch.device) -> torch.Tensor:
    return bench.random_tokens(1, length, vocab, device, seed=length)  # (1, T)


def _decoder_forward(name: str, label: str, args: dict[str, Any], device: torch.device,
                     length: float) -> tuple[Workload, int]:
    """Backbone ``name`` (built with ``args``) forward over ``length`` random tokens."""
    torch.manual_seed(0)
    model = zoo.create_backbone(name, **args).to(device).eval()
    tokens = _tokens(int(length), model.cfg.vocab_size, device)
    return _forward(label, model, (tokens,), model), int(length)


def rope_forward(sizes: Sizes, device: torch.device, length: float) -> tuple[Workload, int]:
    """``text_decoder_small`` (RoPE) forward over ``length`` tokens."""
    return _decoder_forward("text_decoder_small", "rope decoder forward", sizes.rope, device, length)


def rope_train(sizes: Sizes, device: torch.device, length: float) -> tuple[Workload, int]:
    """One AdamW step of ``text_decoder_small`` + LM head on next-token cross-entropy over ``length`` tokens."""
    torch.manual_seed(0)
    model = zoo.create_model("text_decoder_small", "lm", backbone_args=sizes.rope).to(device)
    tokens = _tokens(int(length) + 1, model.backbone.cfg.vocab_size, device)  # (1, T + 1)

    def loss_of() -> torch.Tensor:
        logits = model.head.proj(model.backbone(tokens[:, :-1]).tokens)  # (1, T, V)
        return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())

    step = bench.mode_step(model, "train", loss_of, infer=lambda: None)
    return Workload("rope decoder train step", "steps", 1, step, model, "train", 1), int(length)


def gpt2_forward(sizes: Sizes, device: torch.device, length: float) -> tuple[Workload, int]:
    """``text_decoder_gpt2`` (learned positions) forward over ``length`` tokens."""
    return _decoder_forward("text_decoder_gpt2", "GPT-2 forward", sizes.gpt2, device, length)


def vit_forward(sizes: Sizes, device: torch.device, pixels: float) -> tuple[Workload, int]:
    """``vit_tiny`` (patch 16) forward on one ``pixels`` x ``pixels`` image built for that size."""
    torch.manual_seed(0)
    size = int(pixels)
    model = zoo.create_backbone("vit_tiny", img_size=size, patch_size=16, **sizes.vit).to(device).eval()
    image = torch.randn(1, 3, size, size, device=device)
    return _forward("ViT-Ti forward", model, (image,), model), (size // 16) ** 2 + 1


def speech_forward(sizes: Sizes, device: torch.device, seconds: float) -> tuple[Workload, int]:
    """``speech_encoder_small`` forward (log-mel, subsampling, blocks) on a ``seconds`` clip."""
    torch.manual_seed(0)
    model = zoo.create_backbone("speech_encoder_small", **sizes.speech).to(device).eval()
    samples = int(seconds * model.cfg.sample_rate)
    wave = 0.1 * torch.randn(1, samples, device=device)
    frames = int(model.output_lengths(torch.tensor([samples]))[0])
    return _forward("speech encoder forward", model, (wave,), model), frames


@functools.lru_cache(maxsize=2)
def _lm(overrides: tuple[tuple[str, Any], ...], device: torch.device) -> torch.nn.Module:
    """The GPT-2-shape decoder + LM head, built once for every decode point."""
    torch.manual_seed(0)
    return zoo.create_model("text_decoder_gpt2", "lm", backbone_args=dict(overrides)).to(device).eval()


def decode_point(sizes: Sizes, device: torch.device, use_cache: bool, context: float) -> tuple[Workload, int]:
    """Batch-1 greedy decode steps whose tokens attend to ``context`` positions: 8 steps with the cache,
    or 1 step without it (a forward over the whole sequence); items = tokens decoded."""
    model = _lm(tuple(sorted(sizes.gpt2.items())), device)
    new = CACHED_NEW_TOKENS if use_cache else 1
    cfg = model.backbone.cfg
    shape = Shape(vocab=cfg.vocab_size, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, positions=cfg.max_len,
                  prompt=int(context) - new, new_tokens=new, uncached_new_tokens=new)
    name = f"decode {'with' if use_cache else 'without'} cache"
    return decode_steps(model, shape, device, use_cache, False, name), int(context)


def curves(names: Sequence[str], sizes: Sizes, device: torch.device) -> list[Curve]:
    """The curves of the sweeps ``names`` (each one of :data:`SWEEPS`)."""
    shape = f"d={sizes.gpt2.get('dim', GPT2['dim'])} L={sizes.gpt2.get('depth', GPT2['depth'])}"
    by_sweep = {
        "text": [
            Curve("text", "RoPE decoder (small) forward", "forward", sizes.text_lengths, "tokens",
                  functools.partial(rope_forward, sizes, device)),
            Curve("text", "RoPE decoder (small) train step", "step", sizes.text_lengths, "tokens",
                  functools.partial(rope_train, sizes, device)),
            Curve("text", f"GPT-2 shape ({shape}) forward", "forward", sizes.gpt2_lengths, "tokens",
                  functools.partial(gpt2_forward, sizes, device)),
        ],
        "image": [Curve("image", "ViT-Ti/16 forward", "forward", sizes.image_sizes, "px",
                        functools.partial(vit_forward, sizes, device))],
        "audio": [Curve("audio", "speech encoder (small) forward", "forward", sizes.audio_seconds, "s",
                        functools.partial(speech_forward, sizes, device))],
        "decode": [Curve("decode", f"GPT-2 ({shape}) decode, KV cache", "token", sizes.decode_contexts,
                         "context", functools.partial(decode_point, sizes, device, True)),
                   Curve("decode", f"GPT-2 ({shape}) decode, no cache", "token", sizes.decode_contexts,
                         "context", functools.partial(decode_point, sizes, device, False))],
    }
    return [curve for name in names for curve in by_sweep[name]]


# ---- timing and fitting ------------------------------------------------------------------------

def repetitions(step_s: float, target_s: float) -> int:
    """Timed single-step blocks for a point whose step takes ``step_s``: about ``target_s`` in all,
    between :data:`MIN_REPEATS` and :data:`MAX_REPEATS`."""
    if step_s <= 0:
        return MAX_REPEATS
    return max(MIN_REPEATS, min(MAX_REPEATS, round(target_s / step_s)))


def time_point(workload: Workload, device: torch.device, precision: str, target_s: float) -> dict[str, Any]:
    """Warm up one step, then the median over single-step blocks of seconds per item (forward, step, token)."""
    warm = bench.warm_up(workload, device, precision, steps=1)
    repeats = repetitions(warm.step_s, target_s)
    seconds = [bench.time_block(workload, device, precision, 1) / workload.items for _ in range(repeats)]
    return {"seconds": statistics.median(seconds), "seconds_min": min(seconds), "seconds_max": max(seconds),
            "repeats": repeats}


def fit_slope(lengths: Sequence[float], seconds: Sequence[float]) -> float:
    """Exponent ``k`` of ``t = c * n^k``: the least-squares slope of log t on log n (two points at least)."""
    if len(lengths) != len(seconds) or len(lengths) < 2:
        raise ValueError(f"a slope needs two or more (length, time) points, got {len(lengths)} and {len(seconds)}")
    return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def upper_half(lengths: Sequence[float]) -> list[int]:
    """Indices of the points in the upper half of the range on a log scale (at least the last two)."""
    middle = math.sqrt(min(lengths) * max(lengths))
    chosen = [i for i, n in enumerate(lengths) if n >= middle * (1 - 1e-9)]
    return chosen if len(chosen) >= 2 else list(range(len(lengths)))[-2:]


def measure_curve(curve: Curve, device: torch.device, precision: str, target_s: float) -> dict[str, Any]:
    """Every point of ``curve`` (built and freed one by one) and its slopes."""
    points = []
    for value in curve.values:
        workload, length = curve.build(value)
        point = {"value": value, "length": length, **time_point(workload, device, precision, target_s)}
        del workload
        bench.release_memory(device)
        points.append(point)
        print(f"  {curve.label}: {value:g} {curve.value_unit} (n={length}) "
              f"{point['seconds'] * 1e3:.4g} ms/{curve.unit} [{point['repeats']} reps]", flush=True)
    lengths, seconds = [p["length"] for p in points], [p["seconds"] for p in points]
    upper = upper_half(lengths)
    return {"sweep": curve.sweep, "label": curve.label, "unit": curve.unit, "value_unit": curve.value_unit,
            "precision": precision, "points": points, "slope": fit_slope(lengths, seconds),
            "slope_upper": fit_slope([lengths[i] for i in upper], [seconds[i] for i in upper]),
            "upper_from": lengths[upper[0]]}


def kv_speedup(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per context: seconds per token without the cache / with it, for each precision with both curves."""
    speedups = []
    for precision in dict.fromkeys(r["precision"] for r in results):
        decode = {r["label"].rsplit(", ", 1)[1]: r for r in results
                  if r["sweep"] == "decode" and r["precision"] == precision}
        if {"KV cache", "no cache"} <= decode.keys():
            for cached, uncached in zip(decode["KV cache"]["points"], decode["no cache"]["points"]):
                speedups.append({"precision": precision, "context": cached["length"],
                                 "speedup": uncached["seconds"] / cached["seconds"]})
    return speedups


# ---- outputs -----------------------------------------------------------------------------------

def _range(curve: dict[str, Any]) -> str:
    first, last = curve["points"][0], curve["points"][-1]
    return f"{first['value']:g}-{last['value']:g} {curve['value_unit']} (n {first['length']}-{last['length']})"


def markdown(machine: dict[str, Any], results: Sequence[dict[str, Any]], speedups: Sequence[dict[str, Any]]) -> str:
    """The slopes table and the KV-cache speed-up per context."""
    lines = [(f"Length sweep on {machine['gpu'] or machine['cpu']} ({machine['device']}, "
              f"torch threads: {machine['torch_threads']}), {machine['date'][:10]}; batch 1, median of timed repetitions."),
             "", "| curve | precision | range | time at shortest | time at longest | slope | upper-half slope |",
             "|---|---|---|---|---|---|---|"]
    for curve in results:
        first, last = curve["points"][0]["seconds"], curve["points"][-1]["seconds"]
        lines.append(f"| {curve['label']} | {curve['precision']} | {_range(curve)} | {first * 1e3:.3g} ms/{curve['unit']}"
                     f" | {last * 1e3:.3g} ms/{curve['unit']} | {curve['slope']:.2f} | {curve['slope_upper']:.2f} "
                     f"(n >= {curve['upper_from']}) |")
    if speedups:
        lines += ["", "KV-cache speed-up per decoded token (no cache / cache): " + ", ".join(
            f"{s['context']}: {s['speedup']:.1f}x" + (f" ({s['precision']})" if s["precision"] != "fp32" else "")
            for s in speedups)]
    return "\n".join(lines) + "\n"


def plot(path: Path, machine: dict[str, Any], results: Sequence[dict[str, Any]],
         speedups: Sequence[dict[str, Any]]) -> None:
    """Log-log time against length, one line per curve with its slopes in the legend; the KV-cache
    speed-up against context beside it when the decode sweep ran."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")   # 64, 0.001, 20: no powers of two or ten
    fig = Figure(figsize=(13 if speedups else 9, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, width_ratios=(2, 1)) if speedups else [fig.subplots()]
    ax = axes[0]
    for curve in results:
        lengths = [p["length"] for p in curve["points"]]
        seconds = [p["seconds"] for p in curve["points"]]
        ax.plot(lengths, seconds, marker="o", label=f"{curve['label']} [{curve['precision']}]: slope "
                f"{curve['slope']:.2f}, upper half {curve['slope_upper']:.2f}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n: sequence length attention sees (tokens, patches + 1, audio frames / 4, decode context)")
    ax.set_ylabel("seconds per forward / train step / decoded token (median)")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncol=2)
    if speedups:
        for precision in dict.fromkeys(s["precision"] for s in speedups):
            mine = [s for s in speedups if s["precision"] == precision]
            axes[1].plot([s["context"] for s in mine], [s["speedup"] for s in mine], marker="o", label=precision)
        axes[1].set_xscale("log", base=2)
        axes[1].set_yscale("log")
        axes[1].set_xlabel("decode context (tokens)")
        axes[1].set_ylabel("per-token time without cache / with cache")
        axes[1].set_title("KV-cache speed-up", fontsize=9)
        axes[1].grid(True, which="both", alpha=0.3)
        axes[1].legend(fontsize=7)
    for axis in axes:
        axis.xaxis.set_major_formatter(plain)
        axis.yaxis.set_major_formatter(plain)
    if speedups:
        axes[1].yaxis.set_minor_formatter(plain)   # a speed-up range within one decade needs its minor ticks named
    fig.suptitle(f"Cost as work grows, batch 1: {machine['gpu'] or machine['cpu']} ({machine['device']}, "
                 f"torch threads: {machine['torch_threads']}), {machine['date'][:10]}. Slope 1 = linear, 2 = quadratic",
                 fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def run(names: Sequence[str], device: torch.device, precisions: Sequence[str], out: Path, sizes: Sizes = FULL,
        options: dict[str, Any] | None = None) -> list[Path]:
    """Measure the sweeps ``names`` at each precision and write ``<stem>-sweep.json``, ``.md`` and ``.png``."""
    started = time.perf_counter()
    results = []
    for precision in precisions:
        for curve in curves(names, sizes, device):
            results.append(measure_curve(curve, device, precision, sizes.point_seconds))
    options = {**(options or {}), "seconds": round(time.perf_counter() - started, 1)}
    speedups = kv_speedup(results)
    machine = report.machine_info(device)
    stem = Path(out) / f"{report.result_stem(machine)}-sweep"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "options": options, "curves": results, "kv_speedup": speedups}
    paths[0].write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    text = markdown(machine, results, speedups)
    paths[1].write_text(text, encoding="utf-8")
    plot(paths[2], machine, results, speedups)
    print()
    print(text)
    return paths

