"""The benchmark harness (tasks/engine/bench.py), FLOP counting, reports and the runner, on tiny models."""
from __future__ import annotations

import contextlib
import copy
import json
import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import flops, report, run
from tasks.engine import bench, precision
from tasks.engine.device import pick_device
from tasks.engine.task import AIM, Workload
from zoo.errors import ZooError

CPU = torch.device("cpu")


def linear_workload(batch: int = 4, name: str = "tiny", log: list[str] | None = None,
                    oom_above: int | None = None, scale: int = 1) -> Workload:
    """A tiny MLP forward; ``log`` records each step; ``oom_above`` simulates running out of memory."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32 * scale), nn.GELU(), nn.Linear(32 * scale, 8)).eval()
    x = torch.randn(batch, 16)

    def step() -> torch.Tensor:
        if log is not None:
            log.append(name)
        if oom_above is not None and batch > oom_above:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated at batch {batch})")
        return model(x)

    return Workload(name=name, unit="images", items=batch, step=step, model=model, batch_size=batch,
                    factory=lambda size: linear_workload(size, name, log, oom_above, scale))


# ---- harness -------------------------------------------------------------------------------------

def test_items_per_s_is_consistent_with_the_measured_time() -> None:
    pause = 0.01

    def step() -> None:
        time.sleep(pause)

    workload = Workload("sleep", "images", items=8, step=step)
    start = time.perf_counter()
    rounds = bench.interleave([workload], [3], rounds=3, device=CPU, precision="fp32")
    wall = time.perf_counter() - start
    speeds = rounds.of(0)
    assert len(speeds) == 3 and all(s > 0 for s in speeds)
    for speed, step_s in zip(speeds, (r[0] for r in rounds.step_s)):
        assert speed * step_s == pytest.approx(8)          # items/s x s/step = items per step
        assert speed <= 8 / pause                            # a step sleeps at least `pause`
    assert 9 * 8 / wall <= max(speeds)                       # 9 steps inside the wall time
    assert rounds.median_step_s(0) >= pause


def test_interleaving_alternates_ours_and_reference() -> None:
    log: list[str] = []
    a, b = linear_workload(name="A", log=log), linear_workload(name="B", log=log)
    rounds = bench.interleave([a, b], [1, 1], rounds=5, device=CPU, precision="fp32")
    assert log == ["A", "B"] * 5
    assert len(rounds.ratios(0, 1)) == 5
    log.clear()
    bench.interleave([a, b, linear_workload(name="M", log=log)], [2, 1, 1], rounds=2, device=CPU, precision="fp32")
    assert log == ["A", "A", "B", "M"] * 2


def test_run_context_applies_bf16_autocast_and_inference_mode() -> None:
    layer = nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with bench.run_context(CPU, "bf16", "inference"):
        out = layer(x)
    assert out.dtype == torch.bfloat16 and out.is_inference()
    with bench.run_context(CPU, "fp32", "train"):
        out = layer(x)
    assert out.dtype == torch.float32 and out.requires_grad
    with pytest.raises(ValueError, match="precision"):
        with bench.run_context(CPU, "fp8", "train"):
            pass


def test_channels_last_and_compile_paths_run_on_cpu() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    reference = copy.deepcopy(model)
    images = torch.randn(2, 3, 8, 8)
    prepared = bench.prepare_model(model, compile="eager", channels_last=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.allclose(prepared(images), reference(images), atol=1e-6)
    assert bench.maybe_compile(reference, False) is reference


# Run in a fresh interpreter: after hundreds of tests the allocator may hand out memory the process
# already holds, which no resident-set measurement can see as a new peak.
PEAK_SCRIPT = """
import sys, time, torch
from tasks.engine import bench
from tasks.engine.device import pick_device
from tasks.engine.task import Workload
from zoo.errors import ZooError
if sys.argv[1] == "sampled":  # the fallback for kernels that ignore a VmHWM reset
    bench._host_memory().kind = "sampled"

def step():
    # 80 MB transient, above glibc's largest mmap threshold (32 MB): fresh pages each time. Held
    # for 30 ms, as a real step holds its activations, so the 1 ms sampler sees it on a busy machine.
    transient = torch.ones(20_000_000)
    time.sleep(0.03)
    return transient.sum()

warm = bench.warm_up(Workload("alloc", "items", 1, step), torch.device("cpu"), "fp32", steps=2)
print(warm.memory_kind, warm.step_s, warm.peak_memory_bytes)
"""


@pytest.mark.parametrize("kind", ["default", "sampled"])
def test_warm_up_reports_peak_memory_of_a_step(kind: str) -> None:
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, kind], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    memory_kind, step_s, peak = done.stdout.split()
    assert memory_kind == "rss_peak" and float(step_s) > 0
    assert int(peak) >= 40_000_000


@pytest.mark.parametrize("reset_works, has_statm, kind", [(True, True, "vmhwm"), (False, True, "sampled"),
                                                           (False, False, "maxrss")])
def test_host_memory_method_follows_what_the_kernel_offers(monkeypatch, tmp_path, reset_works: bool,
                                                           has_statm: bool, kind: str) -> None:
    monkeypatch.setattr(bench._HostMemory, "_reset_works", lambda self: reset_works)
    monkeypatch.setattr(bench._HostMemory, "statm", Path("/proc/self/statm") if has_statm else tmp_path / "absent")
    assert bench._HostMemory().kind == kind


def test_vmhwm_peak_is_the_high_water_mark_above_the_starting_level(monkeypatch, tmp_path) -> None:
    status, clear_refs = tmp_path / "status", tmp_path / "clear_refs"
    monkeypatch.setattr(bench._HostMemory, "status", status)
    monkeypatch.setattr(bench._HostMemory, "clear_refs", clear_refs)
    monkeypatch.setattr(bench._HostMemory, "_reset_works", lambda self: True)
    memory = bench._HostMemory()
    status.write_text("VmHWM:\t  5000 kB\nVmRSS:\t  1000 kB\n")
    with memory.measure() as result:
        status.write_text("VmHWM:\t  9000 kB\nVmRSS:\t  1200 kB\n")   # the block peaked at 9000 kB
    assert clear_refs.read_text() == "5"
    assert result["bytes"] == (9000 - 1000) * 1024


def test_parameter_bytes_and_count() -> None:
    model = nn.Linear(100, 100)
    assert bench.parameter_bytes(model) == (100 * 100 + 100) * 4
    assert bench.parameter_count(model) == 100 * 100 + 100


def test_train_step_updates_only_trainable_weights_and_mode_step_sets_the_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    model[0].requires_grad_(False)
    frozen, before = model[0].weight.clone(), model[2].weight.clone()
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    step = bench.mode_step(model, "train", lambda: F.mse_loss(model(x), y), lambda: model(x))
    assert model.training
    losses = [step().item() for _ in range(3)]
    assert torch.equal(model[0].weight, frozen) and not torch.equal(model[2].weight, before)
    assert all(math.isfinite(loss) for loss in losses)
    infer = bench.mode_step(model, "inference", lambda: F.mse_loss(model(x), y), lambda: model(x))
    assert not model.training and torch.equal(infer(), infer())  # eval: dropout off


def test_threads_and_device_options() -> None:
    before = torch.get_num_threads()
    try:
        bench.set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError):
        bench.set_threads(0)
    assert pick_device("cpu") == CPU


def test_compile_mode_reaches_torch_compile_and_reduce_overhead_needs_a_gpu(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: calls.append(options) or fn)
    for flag, expected in ((True, {}), ("eager", {"backend": "eager", "mode": None}),
                           ("inductor:reduce-overhead", {"backend": "inductor", "mode": "reduce-overhead"})):
        assert bench.maybe_compile(len, flag) is len and calls.pop() == expected
    assert bench.maybe_compile(len, False) is len and not calls
    assert run.parse_args(["--compile-mode", "max-autotune"]).compile == "inductor:max-autotune"
    assert run.parse_args(["--compile"]).compile is True
    run.check_compile_mode("reduce-overhead", torch.device("cuda"))
    run.check_compile_mode("max-autotune", CPU)
    with pytest.raises(ValueError, match="--compile-mode reduce-overhead replays CUDA graphs.*use --device cuda"):
        run.check_compile_mode("reduce-overhead", CPU)


@pytest.mark.parametrize("has_cuda", [False, True])
def test_auto_device_follows_cuda_availability(monkeypatch, has_cuda: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(has_cuda))
    assert pick_device("auto").type == ("cuda" if has_cuda else "cpu")
    if has_cuda:
        assert pick_device("cuda:0") == torch.device("cuda", 0)
    else:
        with pytest.raises(ZooError, match="--device cuda:0 .*no CUDA device"):
            pick_device("cuda:0")
    with pytest.raises(ZooError, match="--device 'gpu'"):
        pick_device("gpu")


# ---- FLOPs ---------------------------------------------------------------------------------------

def test_flops_of_a_linear_layer_match_a_hand_count() -> None:
    layer = nn.Linear(24, 10, bias=False)
    x = torch.randn(6, 24)
    assert flops.count_flops(lambda: layer(x)) == 2 * 24 * 10 * 6
    workload = Workload("linear", "rows", items=6, step=lambda: layer(x), model=layer)
    assert flops.workload_flops_per_item(workload, CPU, "fp32") == 2 * 24 * 10


def test_cpu_attention_kernel_formula() -> None:
    b, h, t, hd = 2, 3, 16, 8
    q, k, v = (torch.randn(b, h, t, hd) for _ in range(3))
    with FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(q, k, v)
    assert plain.get_total_flops() == 0  # the gap this module fills
    with FlopCounterMode(display=False, custom_mapping=flops.extra_flop_mapping()) as counter:
        F.scaled_dot_product_attention(q, k, v)
    counts = counter.get_flop_counts()["Global"]
    assert [str(op) for op in counts] == ["aten._scaled_dot_product_flash_attention_for_cpu"]
    assert counter.get_total_flops() == 4 * b * h * t * t * hd

    q.requires_grad_(True)
    total = flops.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert total == 4 * b * h * t * t * hd + 10 * b * h * t * t * hd  # backward is 2.5x forward


def test_peak_flops_table() -> None:
    assert flops.peak_flops_by_name("NVIDIA H200", "bf16") == 989e12
    assert flops.peak_flops_by_name("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert flops.peak_flops_by_name("NVIDIA H100 PCIe", "bf16") == 756e12
    assert flops.peak_flops_by_name("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    assert flops.peak_flops_by_name("NVIDIA GeForce RTX 4090", "bf16") == 165e12
    assert flops.peak_flops_by_name("Some Future GPU", "bf16") is None
    assert flops.peak_flops(CPU, "fp32") is None
    assert flops.peak_flops_by_name("NVIDIA H200 NVL", "bf16") == 835.5e12       # NVL boards: their own row
    assert flops.peak_flops_by_name("NVIDIA H100 NVL", "tf32") == 417.5e12
    assert flops.peak_flops_by_name("NVIDIA H200", "tf32") == 494.7e12


@pytest.mark.parametrize("matmul_precision, expected", [("highest", "fp32"), ("high", "tf32"), ("medium", "tf32")])
def test_mfu_divides_by_the_peak_of_the_precision_the_matmuls_use(monkeypatch, matmul_precision: str,
                                                                  expected: str) -> None:
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: matmul_precision)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert flops.peak_kind("fp32") == expected and flops.peak_kind("bf16") == "bf16"
    table = dict(flops.PEAK_FLOPS)[r"H100|H200|GH200"]
    assert flops.peak_flops(torch.device("cuda"), "fp32") == table[expected]


def test_cuda_peak_memory_counts_the_state_earlier_warm_up_steps_left(monkeypatch) -> None:
    """On CUDA the measured (last) step starts with the optimizer state the first step created: it counts."""
    allocated = iter([1_000, 1_000 + 800])         # before warm-up; before the measured step (+ AdamW moments)
    monkeypatch.setattr(bench, "cuda_allocated", lambda device: next(allocated))
    monkeypatch.setattr(bench, "time_block", lambda *args: 0.01)

    @contextlib.contextmanager
    def transient(device):
        yield (result := {})
        result.update(bytes=300, kind="cuda_max_allocated")

    monkeypatch.setattr(bench, "peak_memory", transient)
    model = torch.nn.Linear(10, 10)                # 110 float32 parameters: 440 bytes
    warm = bench.warm_up(Workload("w", "items", 1, lambda: None, model), torch.device("cuda"), "fp32", steps=3)
    assert warm.peak_memory_bytes == 300 + 800 + 440 and warm.memory_kind == "cuda_max_allocated"


def test_matmul_workload_counts_its_flops() -> None:
    workload = flops.matmul_workload(CPU, "fp32", 32)
    assert workload.items == 2 * 32 ** 3
    assert flops.workload_flops_per_item(workload, CPU, "fp32") == 1.0
    with bench.run_context(CPU, "bf16", "inference"):
        assert flops.matmul_workload(CPU, "bf16", 8).step().dtype == torch.bfloat16


# ---- batch-size sweep ----------------------------------------------------------------------------

def test_out_of_memory_shrinks_the_batch() -> None:
    sweep = bench.sweep_batch_size(lambda size: linear_workload(size, oom_above=24), CPU, "fp32",
                                   start=1, max_batch=4096, target_s=0.001)
    assert sweep.largest == 24 and sweep.stopped_by == "out of memory"
    tried = {p.batch_size: p.fits for p in sweep.points}
    assert tried[16] and tried[24] and not tried[32] and not tried[28]
    assert all(p.items_per_s > 0 for p in sweep.points if p.fits)
    assert [p.batch_size for p in sweep.points] == sorted(tried)


def test_sweep_stops_at_max_batch_and_reraises_other_errors() -> None:
    sweep = bench.sweep_batch_size(lambda size: linear_workload(size), CPU, "fp32", start=2, max_batch=8,
                                   target_s=0.001)
    assert sweep.largest == 8 and sweep.stopped_by == "max batch"

    def broken(size: int) -> Workload:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        bench.sweep_batch_size(broken, CPU, "fp32")
    assert bench.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not bench.is_out_of_memory(ValueError("out of memory"))


# ---- runner and reports --------------------------------------------------------------------------

def toy_pairs(device: torch.device, precision: str, quick: bool, compile: bool) -> list:
    return [(linear_workload(8, "zoo tiny"), linear_workload(8, "ref tiny", scale=4)),
            (linear_workload(4, "zoo solo"), None)]


def run_toy(tmp_path, monkeypatch, *extra: str) -> dict:
    monkeypatch.setattr(run, "sources", lambda args: [("tasks", "toy", toy_pairs)])
    monkeypatch.setattr(flops, "matmul_size", lambda device, quick: 64)
    status = run.main(["--quick", "--rounds", "5", "--block-seconds", "0.005", "--warmup", "1",
                       "--out", str(tmp_path), *extra])
    assert status == 0
    [path] = tmp_path.glob("*.json")
    return report.read_json(path)


def test_runner_writes_rows_json_markdown_and_chart(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(run, "has_bf16_units", lambda device: False)  # fp32 rows only, whatever this CPU has
    result = run_toy(tmp_path, monkeypatch, "--sweep", "--sweep-max", "16")
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".md", ".png"}
    paired, solo = result["rows"]
    assert paired["ours"]["name"] == "zoo tiny" and paired["reference"]["name"] == "ref tiny"
    assert len(paired["ratios"]) == 5
    assert paired["ratio"] == pytest.approx(sorted(paired["ratios"])[2])
    assert paired["ratio_min"] <= paired["ratio"] <= paired["ratio_max"]
    assert paired["ours"]["flops_per_item"] == 2 * (16 * 32 + 32 * 8)
    assert 0 < paired["ours"]["matmul_fraction"] and paired["ours"]["mfu"] is None
    assert solo["reference"] is None and solo["ratio"] is None
    assert paired["sweep"]["ours"]["largest"] == 16
    assert result["machine"]["cpu"] and result["machine"]["versions"]["torch"]
    table = next(tmp_path.glob("*.md")).read_text()
    assert "| toy | inference | fp32 | zoo tiny" in table and "sweep toy zoo tiny" in table


def test_rows_below_their_aim_are_listed_with_how_the_two_sides_differ(tmp_path, monkeypatch) -> None:
    """Each pair carries its aim (1.05x unless the workload says) and what differs in kind; the runner's
    table ends with every row under its aim and why, and leaves out rows that meet theirs."""
    def pairs(device: torch.device, precision: str, quick: bool, compile: bool) -> list:
        same = linear_workload(8, "zoo same")
        return [(same, linear_workload(8, "ref same")),                            # the same work: about 1x
                (replace(linear_workload(8, "zoo other"), aim=1000.0, differs="different block"),
                 linear_workload(8, "ref other")),
                (replace(linear_workload(8, "zoo easy"), aim=0.01), linear_workload(8, "ref easy"))]

    monkeypatch.setattr(run, "has_bf16_units", lambda device: False)
    monkeypatch.setattr(run, "sources", lambda args: [("tasks", "toy", pairs)])
    monkeypatch.setattr(flops, "matmul_size", lambda device, quick: 64)
    assert run.main(["--quick", "--rounds", "3", "--block-seconds", "0.005", "--warmup", "1",
                     "--out", str(tmp_path)]) == 0
    same, other, easy = report.read_json(next(tmp_path.glob("*.json")))["rows"]
    assert (same["aim"], same["differs"]) == (AIM, "") and AIM == 1.05
    assert (other["aim"], other["differs"], easy["aim"]) == (1000.0, "different block", 0.01)
    table = next(tmp_path.glob("*.md")).read_text()
    listed = table.split("Rows below their aim:")[1].splitlines()
    assert any(line.startswith("- toy: zoo other vs ref other") and "aim 1000.00x; different block" in line
               for line in listed)
    assert not any("zoo easy" in line for line in listed)
    assert report.below_aim(same) == (same["ratio"] < 1.05)
    assert report.why_below(same) == "same work on both sides"


def test_gpus_always_get_both_precisions(monkeypatch) -> None:
    monkeypatch.setattr(run, "has_bf16_units", lambda device: False)
    assert run.default_precisions(torch.device("cuda")) == ["fp32", "bf16"]


@pytest.mark.parametrize("units, expected", [(False, {"fp32"}), (True, {"bf16"})])
def test_auto_precision_rows_follow_the_cpu(tmp_path, monkeypatch, units: bool, expected: set[str]) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"} if units else {"avx2"})
    rows = run_toy(tmp_path, monkeypatch, "--precision", "auto")["rows"]
    assert {r["precision"] for r in rows} == expected


def test_runner_adds_bf16_rows_on_a_cpu_with_bf16_units(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(run, "has_bf16_units", lambda device: True)
    rows = run_toy(tmp_path, monkeypatch)["rows"]
    assert [(r["precision"], r["ours"]["name"]) for r in rows] == [
        ("fp32", "zoo tiny"), ("fp32", "zoo solo"), ("bf16", "zoo tiny"), ("bf16", "zoo solo")]


def test_explicit_precision_overrides_the_cpu_default(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(run, "has_bf16_units", lambda device: True)
    rows = run_toy(tmp_path, monkeypatch, "--precision", "fp32")["rows"]
    assert {r["precision"] for r in rows} == {"fp32"}


def test_result_file_round_trip_and_compare(tmp_path) -> None:
    machine = report.machine_info(CPU)
    side = {"name": "zoo tiny", "parameters": 10, "config": "", "items_per_s": 100.0, "items_per_s_min": 95.0,
            "items_per_s_max": 104.0, "step_s": 0.01, "steps_per_round": 3, "peak_memory_bytes": 1024,
            "memory_kind": "rss_peak", "flops_per_item": 1e6, "flops_per_s": 1e8, "matmul_fraction": 0.5,
            "mfu": None}
    row = {"suite": "tasks", "task": "toy", "precision": "fp32", "compile": False, "channels_last": False,
           "mode": "inference", "unit": "images", "batch_size": 8, "ours": side,
           "reference": {**side, "name": "ref tiny"}, "ratio": 1.0, "ratio_min": 0.97, "ratio_max": 1.03,
           "ratios": [0.97, 1.0, 1.03, 1.0, 1.0], "rounds": 5, "matmul": {"name": "mm", "flops_per_s": 2e8}}
    old_path, same_path, bad_path = tmp_path / "old.json", tmp_path / "same.json", tmp_path / "bad.json"
    report.write_json(old_path, machine, [row], {"quick": True})
    loaded = report.read_json(old_path)
    assert loaded == json.loads(json.dumps({"format": report.FORMAT_VERSION, "machine": machine,
                                            "options": {"quick": True}, "rows": [row]}))
    report.write_json(same_path, machine, [row], {"quick": True})
    slower = {**row, "ratio": 0.8, "ratio_min": 0.78, "ratio_max": 0.82, "ours": {**side, "items_per_s": 80.0,
                                                                               "items_per_s_min": 78.0,
                                                                               "items_per_s_max": 82.0}}
    report.write_json(bad_path, machine, [slower], {"quick": True})

    assert report.compare(loaded, report.read_json(same_path)) == ([], [])
    regressions, _ = report.compare(loaded, report.read_json(bad_path))
    assert len(regressions) == 2 and "ratio 1.000 -> 0.800" in regressions[0]
    noisy = {**slower, "ratio_min": 0.5, "ratio_max": 1.2, "ours": {**side, "items_per_s_min": 50.0,
                                                                    "items_per_s_max": 120.0}}
    assert report.compare(loaded, {"machine": machine, "rows": [noisy]})[0] == []  # within the noise
    assert run.main(["compare", str(old_path), str(same_path)]) == 0
    assert run.main(["compare", str(old_path), str(bad_path)]) == 1
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="junk.json"):
        report.read_json(tmp_path / "junk.json")


def test_a_failing_task_becomes_an_error_row_and_a_failed_exit(tmp_path, monkeypatch) -> None:
    def broken(device: torch.device, precision: str, quick: bool, compile: bool) -> list:
        raise ModuleNotFoundError("No module named 'tasks.toy.bench'")

    monkeypatch.setattr(run, "sources", lambda args: [("tasks", "broken", broken), ("tasks", "toy", toy_pairs)])
    monkeypatch.setattr(flops, "matmul_size", lambda device, quick: 64)
    status = run.main(["--quick", "--block-seconds", "0.005", "--warmup", "1", "--out", str(tmp_path)])
    assert status == 1
    rows = report.read_json(next(tmp_path.glob("*.json")))["rows"]
    assert "tasks.toy.bench" in rows[0]["error"] and rows[1]["ratio"] is not None
    assert "error: ModuleNotFoundError" in next(tmp_path.glob("*.md")).read_text()


def test_chart_labels_name_mode_precision_and_batch_and_result_names_carry_the_time(tmp_path) -> None:
    row = {"task": "sentiment", "ours": {"name": "zoo"}, "reference": {"name": "ref"}, "mode": "train",
           "precision": "bf16", "batch_size": 8, "ratio": 33.0, "ratio_min": 30.0, "ratio_max": 35.0}
    slower = {**row, "mode": "inference", "ratio": 0.9, "ratio_min": 0.85, "ratio_max": 0.95}
    assert report.ratio_label(row) == "sentiment: zoo vs ref [train, bf16, batch 8]"
    assert report.ratio_label(row) != report.ratio_label(slower)
    machine = {"gpu": None, "cpu": "Test CPU", "device": "cpu", "date": "2026-12-02T05:31:07+00:00"}
    assert report.result_stem(machine) == "2026-12-02-053107-cpu"
    assert report.plot_ratios(tmp_path / "chart.png", machine, [row, slower])
    assert (tmp_path / "chart.png").stat().st_size > 1000
    assert run.DEFAULT_OUT == Path("bench-results")
