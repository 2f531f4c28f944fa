"""Benchmark workloads on a tiny GPT-2 shape: same shapes as the reference, real work, exact rewinding."""
from __future__ import annotations

import pytest
import torch

from tasks.engine.bench import run_context
from tasks.text_generation import bench
from tests.text_generation_fixtures import one_thread  # noqa: F401  (autouse)

TINY = bench.Shape(vocab=64, dim=32, depth=2, heads=2, positions=64, prompt=12, new_tokens=5, uncached_new_tokens=3)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def models():
    pytest.importorskip("transformers")
    return bench._ours(TINY, CPU, torch.float32, False), bench._reference(TINY, CPU, torch.float32, False)


def run(workload):
    with run_context(CPU, "fp32", workload.mode):
        return workload.step()


def test_ours_and_the_reference_have_the_same_shape(models) -> None:
    ours, reference = models
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    assert bench.weight_bytes(ours) == 4 * (sum(p.numel() for p in ours.parameters()) - 64 * 32)


def test_prefill_and_decode_do_the_same_work_on_both_sides(models) -> None:
    ours, reference = models
    for batch in (1, 3):
        mine, theirs = bench.prefill(ours, TINY, CPU, batch), bench.prefill(reference, TINY, CPU, batch, True)
        assert mine.items == theirs.items == batch * TINY.prompt
        assert run(mine).shape == (batch, TINY.vocab) and run(theirs).shape == (batch, 1, TINY.vocab)
        for use_cache in (True, False):
            new = TINY.new_tokens if use_cache else TINY.uncached_new_tokens
            mine = bench.decode(ours, TINY, CPU, use_cache, False, batch)
            theirs = bench.decode(reference, TINY, CPU, use_cache, False, batch, True)
            assert mine.items == theirs.items == batch * new
            assert [len(row) for row in run(mine)] == [new] * batch
            assert run(theirs).shape == (batch, TINY.prompt + new)


def test_decode_steps_rewind_to_the_prompt_every_time(models) -> None:
    ours, _ = models
    prompt = bench._tokens(1, TINY.prompt, TINY.vocab, CPU)
    greedy = ours.generate({"inputs": prompt}, max_new_tokens=TINY.new_tokens + 1, stop_tokens=())[0]
    for use_cache, static in ((True, False), (True, "eager"), (False, False)):  # a compile flag means static cache
        workload = bench.decode_steps(ours, TINY, CPU, use_cache, static, "steps")
        assert [run(workload).item() for _ in range(3)] == [greedy[-1]] * 3
    read = bench.weight_read(ours, TINY, CPU, False)
    kv = 2 * TINY.depth * TINY.dim * 4 * sum(TINY.prompt + 1 + i for i in range(1, TINY.new_tokens + 1))
    assert bench.kv_bytes(ours, TINY) == kv
    assert run(read).item() == greedy[-1] and read.items == (TINY.new_tokens * bench.weight_bytes(ours) + kv) / 1e9
    stream = bench.memory_read(CPU, 4096)
    assert stream.items == pytest.approx(4096 / 1e9) and run(stream).item() == 1024.0


def test_the_read_ceiling_is_at_least_four_last_level_caches(tmp_path) -> None:
    for index, (level, size) in enumerate([(1, "32K"), (2, "1024K"), (3, "32768K"), (3, "16M")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "size").write_text(f"{size}\n")
    assert bench.last_level_cache_bytes(tmp_path) == 32 << 20          # the largest cache of the highest level
    assert bench.last_level_cache_bytes(tmp_path / "absent") is None
    assert bench.ceiling_bytes(CPU, 10 << 20, 32 << 20) == 128 << 20    # small reads: 4x the cache
    assert bench.ceiling_bytes(CPU, 600 << 20, 32 << 20) == 600 << 20   # large reads: their own size
    assert bench.ceiling_bytes(CPU, 10 << 20, None) == 10 << 20


def test_the_int8_decode_row_runs_int8_layers_and_does_the_reference_work(models) -> None:
    ours, reference = models
    int8 = bench.int8_copy(ours)
    assert int8.quantization is not None and ours.quantization is None     # the fp32 model is left as it was
    mine = bench.decode(int8, TINY, CPU, True, False, 1, variant=bench.INT8)
    theirs = bench.decode(reference, TINY, CPU, True, False, 1, True)
    assert mine.name == "decode with cache, int8 weights (zoo generate)" and mine.items == theirs.items
    assert [len(row) for row in run(mine)] == [TINY.new_tokens]
    assert mine.factory(2).name == mine.name and mine.factory(2).items == 2 * TINY.new_tokens
