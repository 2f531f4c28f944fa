"""Timing harness for benchmark workloads: warm-up, device sync, timed blocks, peak memory, OOM sweep.

Following nanoGPT's ``bench.py`` and timm's ``benchmark.py``: warm up (this is where
``torch.compile`` compiles), synchronise the device, then time blocks of several steps.
Every step runs inside :func:`run_context` (bf16 autocast when asked, inference mode for
inference workloads), so ours and the reference always run under the same conditions.

Peak memory is the workload's parameters and optimizer state plus the peak transient allocation of one step:
on CUDA from ``max_memory_allocated`` (reset first), on the CPU from the process's peak
resident set (``VmHWM`` reset through ``/proc/self/clear_refs``, or sampled by a thread)
over the first, cold warm-up step, when pages are still fresh.

Task benchmarks build their training steps with :func:`train_step` (one AdamW step, the same on
both sides of a pair) and :func:`mode_step`.

FLOP counting, peak device FLOP/s and the plain-matmul reference live in
``benchmarks/flops.py``; interleaving ours against the reference is :func:`interleave`.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import math
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from tasks.engine.precision import autocast
from tasks.engine.task import Workload
from zoo.progress import progress_bar
from zoo.tokenizer import Tokenizer

PRECISIONS = ("fp32", "bf16")


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given (1 gives the steadiest CPU figures)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA kernels run asynchronously); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def run_context(device: torch.device, precision: str, mode: str) -> Iterator[None]:
    """The context every step runs in: bf16 autocast for ``bf16``, inference mode for inference."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    with autocast(device.type, precision), torch.inference_mode(mode == "inference"):
        yield


def maybe_compile(fn: Callable[..., Any], compile: bool | str) -> Callable[..., Any]:
    """``torch.compile(fn)`` when ``compile`` is set, else ``fn`` (a module or a function).

    ``compile`` may be a backend name (``"eager"`` exercises dynamo without code
    generation, as the tests do), or ``"BACKEND:MODE"`` (``"inductor:reduce-overhead"``: CUDA graphs,
    ``python -m benchmarks --compile-mode``); ``True`` means the default inductor backend and mode.
    """
    if not compile:
        return fn
    if compile is True:
        return torch.compile(fn)
    backend, _, mode = compile.partition(":")
    return torch.compile(fn, backend=backend, mode=mode or None)


def prepare_model(model: nn.Module, *, compile: bool | str = False, channels_last: bool = False) -> nn.Module:
    """Apply channels_last (in place: 4-D weights change layout) and :func:`maybe_compile`.

    The compiled wrapper is returned; build the workload's step around it.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return maybe_compile(model, compile)


def train_step(model: nn.Module, loss_of: Callable[[], torch.Tensor], lr: float = 1e-4,
               fused: bool = False) -> Callable[[], torch.Tensor]:
    """One AdamW step over ``model``'s trainable parameters: zero_grad, ``loss_of()``, backward, step.

    ``fused`` takes PyTorch's fused CUDA kernel (give ours and the reference the same); off,
    AdamW keeps its default (foreach on CUDA). The step returns the loss.
    """
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  fused=True if fused else None)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        optimizer.step()
        return loss

    return step


def mode_step(model: nn.Module, mode: str, loss_of: Callable[[], torch.Tensor], infer: Callable[[], Any],
              fused: bool = False) -> Callable[[], Any]:
    """The step of a ``train`` workload (``model.train()``, :func:`train_step` on ``loss_of``) or of
    an ``inference`` one (``model.eval()``, ``infer``)."""
    if mode == "train":
        model.train()
        return train_step(model, loss_of, fused=fused)
    model.eval()
    return infer


def decode_name(beams: int) -> str:
    """How a generation workload's name says its decoding: "greedy" or "beam K"."""
    return "greedy" if beams == 1 else f"beam {beams}"


def exact_generation(new_tokens: int, beams: int) -> Any:
    """A transformers ``GenerationConfig`` decoding exactly ``new_tokens`` tokens with our special ids
    (``min_new_tokens`` holds EOS back), as ours do with ``stop_tokens=()``: the same decoder steps."""
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=beams, do_sample=False,
                            use_cache=True, pad_token_id=Tokenizer.pad_id, eos_token_id=Tokenizer.eos_id,
                            decoder_start_token_id=Tokenizer.bos_id)


def seq2seq_pairs(train: Sequence[Callable[..., Workload | None]], generate: Sequence[Callable[..., Workload | None]],
                  shape: Any, device: torch.device, compile: bool | str,
                  generate_batch: int) -> list[tuple[Workload, Workload | None]]:
    """An encoder-decoder task's (ours, reference) pairs: one training step on ``shape.batch`` inputs, then
    greedy and beam-4 generation for ``generate_batch``. ``train`` and ``generate`` are the (ours, reference)
    builders: ``train[i](shape, device, compile, batch)``, ``generate[i](shape, device, beams, batch)``."""
    pairs = [tuple(build(shape, device, compile, shape.batch) for build in train)]
    for beams in (1, 4):
        pairs.append(tuple(build(shape, device, beams, generate_batch) for build in generate))
    return pairs


def random_tokens(rows: int, length: int, vocab: int, device: torch.device, seed: int, low: int = 4) -> torch.Tensor:
    """(rows, length) token ids drawn from ``low``..``vocab - 1`` (past the special ids) with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, vocab, (rows, length), generator=generator).to(device)


def parameter_count(model: nn.Module | None) -> int:
    """Number of parameters (0 without a model)."""
    return sum(p.numel() for p in model.parameters()) if model is not None else 0


def parameter_bytes(model: nn.Module | None) -> int:
    """Bytes held by the parameters and buffers (0 without a model)."""
    tensors = (*model.parameters(), *model.buffers()) if model is not None else ()
    return sum(t.numel() * t.element_size() for t in tensors)


# ---- peak memory ------------------------------------------------------------------------------

class _HostMemory:
    """Peak resident memory of this process inside a block.

    Uses ``VmHWM`` when writing ``5`` to ``/proc/self/clear_refs`` really resets it (checked:
    some kernels and sandboxes accept the write and ignore it); otherwise a thread samples
    ``/proc/self/statm`` every millisecond; without ``/proc`` it falls back to ``ru_maxrss``,
    which only sees peaks above the highest level the process ever reached.
    """

    status = Path("/proc/self/status")
    statm = Path("/proc/self/statm")
    clear_refs = Path("/proc/self/clear_refs")
    sample_interval_s = 0.001

    def __init__(self) -> None:
        self.kind = "vmhwm" if self._reset_works() else "sampled" if self.statm.is_file() else "maxrss"

    def _reset(self) -> bool:
        try:
            self.clear_refs.write_text("5")  # "5" resets the peak RSS (Linux >= 4.0)
        except OSError:
            return False
        return True

    def _reset_works(self) -> bool:
        if not self.status.is_file():
            return False
        ballast = torch.ones(16_000_000)  # 64 MB above the current level, so VmHWM > VmRSS after
        del ballast
        gc.collect()
        if not self._reset():
            return False
        return _proc_bytes(self.status, "VmHWM") - _proc_bytes(self.status, "VmRSS") < 32_000_000

    def _resident_bytes(self) -> int:
        return int(self.statm.read_text().split()[1]) * resource.getpagesize()

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, int]]:
        """Yield a dict that holds ``bytes``, the peak above the starting level, on exit."""
        result: dict[str, int] = {}
        if self.kind == "vmhwm":
            self._reset()
            start = _proc_bytes(self.status, "VmRSS")
            yield result
            result["bytes"] = max(0, _proc_bytes(self.status, "VmHWM") - start)
        elif self.kind == "sampled":
            start = self._resident_bytes()
            highest = [start]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(self.sample_interval_s):
                    highest[0] = max(highest[0], self._resident_bytes())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                yield result
            finally:
                stop.set()
                sampler.join()
            result["bytes"] = max(0, max(highest[0], self._resident_bytes()) - start)
        else:
            start = self._maxrss()
            yield result
            result["bytes"] = max(0, self._maxrss() - start)

    @staticmethod
    def _maxrss() -> int:
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@functools.lru_cache(maxsize=1)
def _host_memory() -> _HostMemory:
    return _HostMemory()


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, int | str]]:
    """Measure the peak allocation above the starting level inside the block.

    Yields a dict filled on exit with ``bytes`` and ``kind`` (``cuda_max_allocated`` or
    ``rss_peak``).
    """
    result: dict[str, int | str] = {}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield result
        synchronize(device)
        result.update(bytes=torch.cuda.max_memory_allocated(device) - start, kind="cuda_max_allocated")
    else:
        with _host_memory().measure() as host:
            yield result
        result.update(bytes=host["bytes"], kind="rss_peak")


def _proc_bytes(path: Path, key: str) -> int:
    """The ``KEY: N kB`` field of a ``/proc`` file (``/proc/self/status``, ``/proc/meminfo``) in bytes."""
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024  # the file reports kB
    raise KeyError(key)


def available_host_memory() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes, or None where it cannot be read."""
    try:
        return _proc_bytes(Path("/proc/meminfo"), "MemAvailable")
    except (OSError, KeyError):
        return None


# ---- timing --------------------------------------------------------------------------------------

@dataclass
class WarmUp:
    """What warming a workload up taught: seconds per step (last step) and peak memory."""

    step_s: float
    peak_memory_bytes: int
    memory_kind: str


def warm_up(workload: Workload, device: torch.device, precision: str, steps: int = 3) -> WarmUp:
    """Run ``steps`` (>= 1) untimed steps; compile happens here. Returns the last step's time.

    Peak memory is taken over the first step on the CPU (fresh pages; the optimizer state the
    first step creates is inside it) and over the last on CUDA (exact allocator statistics,
    compilation done), plus on CUDA what the earlier warm-up steps left allocated: the optimizer
    state (AdamW's two moments), caches.
    """
    steps = max(1, steps)
    measured = 0 if device.type == "cpu" else steps - 1
    before = cuda_allocated(device)
    for _ in range(measured):
        time_block(workload, device, precision, 1)
    held = cuda_allocated(device) - before   # state kept since the first step (0 on the CPU)
    with peak_memory(device) as memory:
        step_s = time_block(workload, device, precision, 1)
    for _ in range(measured + 1, steps):
        step_s = time_block(workload, device, precision, 1)
    return WarmUp(step_s, int(memory["bytes"]) + held + parameter_bytes(workload.model), str(memory["kind"]))


def cuda_allocated(device: torch.device) -> int:
    """Bytes the CUDA caching allocator has handed out on ``device`` (synchronised); 0 on the CPU."""
    if device.type != "cuda":
        return 0
    synchronize(device)
    return torch.cuda.memory_allocated(device)


def time_block(workload: Workload, device: torch.device, precision: str, steps: int) -> float:
    """Seconds for ``steps`` consecutive steps, with the device synchronised on both ends."""
    # Ours, not torch.utils.benchmark.Timer: its timeit(n) first runs max(n // 100, 2) untimed steps of the same
    # workload (and pins torch to 1 thread unless told), so in interleave()'s A B A B turns each timed block would
    # follow two steps of itself instead of the other side's block (A A A B B B), and a 1-step block would cost 3.
    with run_context(device, precision, workload.mode):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            workload.step()
        synchronize(device)
    return time.perf_counter() - start


def steps_for(step_s: float, target_s: float, max_steps: int = 1000) -> int:
    """Steps per timed block so that one block lasts about ``target_s`` seconds."""
    return max_steps if step_s <= 0 else max(1, min(max_steps, math.ceil(target_s / step_s)))


@dataclass
class Rounds:
    """Interleaved timing: ``items_per_s[r][w]`` for round ``r`` and workload ``w``."""

    steps: list[int]
    items_per_s: list[list[float]] = field(default_factory=list)
    step_s: list[list[float]] = field(default_factory=list)

    def of(self, index: int) -> list[float]:
        """Items/s of workload ``index`` in every round."""
        return [row[index] for row in self.items_per_s]

    def median_step_s(self, index: int) -> float:
        """Median seconds per step of workload ``index``."""
        return statistics.median(row[index] for row in self.step_s)

    def ratios(self, numerator: int, denominator: int, scale: Sequence[float] = (1.0, 1.0)) -> list[float]:
        """Per-round ratios of (items/s x scale) between two workloads (same round each)."""
        return [row[numerator] * scale[0] / (row[denominator] * scale[1]) for row in self.items_per_s]


def interleave(workloads: Sequence[Workload], steps: Sequence[int], rounds: int,
               device: torch.device, precision: str) -> Rounds:
    """Time the workloads in turn, A B A B ... (A B C A B C ... for three), ``rounds`` times.

    Each turn is one timed block of ``steps[i]`` steps, so a slow spell on a shared machine
    hits both sides of a ratio taken within a round.
    """
    if len(steps) != len(workloads):
        raise ValueError("one step count per workload")
    result = Rounds(list(steps))
    for _ in progress_bar(range(rounds), desc=" / ".join(w.name for w in workloads), unit="round"):
        speeds, times = [], []
        for workload, count in zip(workloads, steps):
            seconds = time_block(workload, device, precision, count)
            speeds.append(count * workload.items / seconds)
            times.append(seconds / count)
        result.items_per_s.append(speeds)
        result.step_s.append(times)
    return result


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of per-round values."""
    return statistics.median(values), min(values), max(values)


# ---- batch-size sweep -----------------------------------------------------------------------------

def is_out_of_memory(error: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError``, ``MemoryError`` and RuntimeErrors saying memory ran out."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def release_memory(device: torch.device) -> None:
    """Free what a failed attempt left behind on CUDA (garbage cycles, then the allocator's cache).

    On the CPU reference counting already returned the memory, and a full collection of a
    large interpreter heap costs seconds.
    """
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


@dataclass
class SweepPoint:
    """One batch size tried by the sweep: throughput or out-of-memory."""

    batch_size: int
    items_per_s: float | None
    step_s: float | None
    peak_memory_bytes: int | None
    fits: bool


@dataclass
class Sweep:
    """Largest batch that fits (None if even the first failed), why the sweep stopped, the curve."""

    largest: int | None
    stopped_by: str                # "out of memory" | "max batch" | "host memory"
    points: list[SweepPoint]


def _try_batch(factory: Callable[[int], Workload], batch_size: int, device: torch.device,
               precision: str, target_s: float) -> SweepPoint:
    """Build and time the workload at ``batch_size``; an OOM anywhere gives a failed point."""
    workload = None
    try:
        workload = factory(batch_size)
        warm = warm_up(workload, device, precision, steps=2)
        steps = steps_for(warm.step_s, target_s)
        seconds = time_block(workload, device, precision, steps)
        return SweepPoint(batch_size, steps * workload.items / seconds, seconds / steps,
                          warm.peak_memory_bytes, fits=True)
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
    del workload  # the failed attempt's tensors must go before the next try
    release_memory(device)
    return SweepPoint(batch_size, None, None, None, fits=False)


def sweep_batch_size(factory: Callable[[int], Workload], device: torch.device, precision: str, *,
                     start: int = 1, max_batch: int = 4096, target_s: float = 0.5,
                     memory_headroom: float = 0.8) -> Sweep:
    """Double the batch from ``start`` until it no longer fits, then bisect down to the largest that does.

    Out of memory (``torch.OutOfMemoryError`` or a RuntimeError saying so) is caught and
    the batch shrunk, as timm's benchmark does. On the CPU, where running out of memory
    means swapping or being killed rather than an exception, doubling also stops when the
    next batch's expected peak (twice the last) would pass ``memory_headroom`` of the
    available host memory.
    """
    points: list[SweepPoint] = []
    good, bad = None, None
    stopped_by = "max batch"
    size = max(1, start)
    while size <= max_batch:
        point = _try_batch(factory, size, device, precision, target_s)
        points.append(point)
        if not point.fits:
            bad, stopped_by = size, "out of memory"
            break
        good = size
        available = available_host_memory() if device.type == "cpu" else None
        if available is not None and 2 * (point.peak_memory_bytes or 0) > memory_headroom * available:
            stopped_by = "host memory"
            break
        size *= 2
    while good is not None and bad is not None and bad - good > max(1, good // 8):
        middle = (good + bad) // 2
        point = _try_batch(factory, middle, device, precision, target_s)
        points.append(point)
        good, bad = (middle, bad) if point.fits else (good, middle)
    points.sort(key=lambda p: p.batch_size)
    return Sweep(good, stopped_by, points)
