"""Generation with the real causal decoder and LM head: KV caches, beams, seeds, batching, stops."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.generation import GenerationConfig, stream
from zoo.errors import ZooError
from zoo.tokenizer import pad_ids
from tests.text_generation_fixtures import one_thread  # noqa: F401  (autouse)

PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]
OPTIONS = dict(max_new_tokens=10, stop_tokens=())


def lm(position: str = "rope", depth: int = 2) -> zoo.ZooModel:
    """A tiny decoder + LM head whose random weights are large enough to give varied tokens."""
    torch.manual_seed(0)
    model = zoo.create_model("text_decoder_tiny", "lm", backbone_args=dict(
        vocab_size=48, dim=32, depth=depth, heads=2, position=position, max_len=64))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                nn.init.normal_(parameter, std=0.4)
    return model.eval()


def batch(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    inputs, mask = pad_ids(rows, 0, left_pad=True)
    return {"inputs": inputs, "mask": mask}


@pytest.fixture(scope="module", params=["rope", "learned"])
def model(request: pytest.FixtureRequest) -> zoo.ZooModel:
    return lm(request.param)


def test_greedy_with_dynamic_and_static_cache_equals_no_cache(model: zoo.ZooModel) -> None:
    prompts = batch(PROMPTS)
    uncached = model.generate(prompts, use_cache=False, **OPTIONS)
    assert model.generate(prompts, static_cache=False, **OPTIONS) == uncached
    assert model.generate(prompts, static_cache=True, **OPTIONS) == uncached
    assert len({token for row in uncached for token in row}) > 3  # not one token repeated


def test_static_cache_is_written_in_place_at_a_position_tensor_and_decodes_as_no_cache(model: zoo.ZooModel) -> None:
    prompts = batch(PROMPTS)
    state = model.head.init_state(model, prompts, static_cache=True, max_new_tokens=4)
    logits, state = model.head.step(model, state.start, state)
    cache, width = state.cache, prompts["inputs"].shape[1]
    storage = [k.data_ptr() for k in cache.keys + cache.values] + [cache.key_mask.data_ptr()]
    uncached = model.head.init_state(model, prompts, use_cache=False)
    expected, uncached = model.head.step(model, uncached.start, uncached)
    for written in range(width, width + 4):
        assert cache.position.dtype == torch.long and cache.position.dim() == 0 and int(cache.position) == written
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
        token = expected.argmax(dim=-1, keepdim=True)
        logits, state = model.head.step(model, token, state)
        expected, uncached = model.head.step(model, token, uncached)
    assert [k.data_ptr() for k in cache.keys + cache.values] + [cache.key_mask.data_ptr()] == storage
    assert bool(cache.key_mask[:, width:].all()) and cache.keys[0].shape[2] == width + 4
    beams = dict(beams=2, **OPTIONS)
    assert model.generate(prompts, static_cache=True, **beams) == model.generate(prompts, use_cache=False, **beams)


def test_static_cache_is_the_default_and_matches_the_dynamic_cache_greedy_and_beam(model: zoo.ZooModel) -> None:
    prompts = batch(PROMPTS)
    assert GenerationConfig().static_cache  # the preallocated cache is the default
    for options in (OPTIONS, dict(beams=3, **OPTIONS)):
        assert model.generate(prompts, **options) == model.generate(prompts, static_cache=False, **options)


def test_one_beam_is_greedy_and_beams_agree_with_and_without_cache(model: zoo.ZooModel) -> None:
    prompts = batch(PROMPTS)
    assert model.generate(prompts, beams=1, **OPTIONS) == model.generate(prompts, **OPTIONS)
    assert model.generate(prompts, beams=3, **OPTIONS) == model.generate(prompts, beams=3, use_cache=False, **OPTIONS)


def test_sampling_repeats_with_the_same_seed(model: zoo.ZooModel) -> None:
    prompts = batch(PROMPTS)
    sample = dict(temperature=1.0, top_k=20, top_p=0.95, **OPTIONS)
    first = model.generate(prompts, seed=3, **sample)
    assert model.generate(prompts, seed=3, **sample) == first
    assert model.generate(prompts, seed=3, static_cache=True, **sample) == first
    assert model.generate(prompts, seed=4, **sample) != first


def test_batched_prompts_of_different_lengths_equal_one_by_one(model: zoo.ZooModel) -> None:
    together = model.generate(batch(PROMPTS), **OPTIONS)
    alone = [model.generate(batch([row]), **OPTIONS)[0] for row in PROMPTS]
    assert together == alone


def test_stop_tokens_stop_each_row(model: zoo.ZooModel) -> None:
    prompts = batch(PROMPTS)
    free = model.generate(prompts, **OPTIONS)
    stop = free[0][3]
    stopped = model.generate(prompts, max_new_tokens=10, stop_tokens=(stop,))
    for row, full in zip(stopped, free):
        cut = full.index(stop) if stop in full else len(full)
        assert row == full[:cut]
    steps = list(stream(model, prompts, max_new_tokens=10, stop_tokens=(stop,)))
    assert steps[3][0] == stop and all(step[0] is None for step in steps[4:])


def test_lm_head_refuses_a_non_causal_backbone() -> None:
    with pytest.raises(ValueError, match="causal"):
        zoo.create_model("text_encoder_tiny", "lm", backbone_args=dict(vocab_size=48, dim=32, depth=1, heads=2))


def test_static_cache_decoding_under_torch_compile_matches_eager() -> None:
    from torch._dynamo.utils import counters

    model = lm(depth=1)
    prompts = batch(PROMPTS)
    eager = model.generate(prompts, **OPTIONS)
    torch._dynamo.reset()
    counters.clear()
    model.backbone.forward = torch.compile(model.backbone.forward, backend="eager")
    assert model.generate(prompts, static_cache=True, **OPTIONS) == eager
    assert model.generate(prompts, static_cache=True, **OPTIONS) == eager
    assert counters["stats"]["unique_graphs"] <= 2  # the prompt's graph and one decode graph for every position


def test_stop_checks_every_k_tokens_give_the_per_token_outputs_greedy_and_seeded_sampling() -> None:
    model, prompts = lm(), batch(PROMPTS)
    free = model.generate(prompts, max_new_tokens=12, stop_tokens=())
    stops = (free[0][2], free[1][4], free[2][5])  # rows stop at different steps
    for options in (dict(), dict(temperature=1.0, top_k=10, seed=5)):
        per_token = model.generate(prompts, max_new_tokens=12, stop_tokens=stops, sync_every=1, **options)
        assert any(len(row) < 12 for row in per_token)
        for every in (3, 8, 64):
            assert model.generate(prompts, max_new_tokens=12, stop_tokens=stops, sync_every=every, **options) == per_token
        streamed: list[list[int]] = [[], [], []]
        for step in stream(model, prompts, max_new_tokens=12, stop_tokens=stops, **options):
            for row, token in zip(streamed, step):
                row.extend([] if token is None else [token])
        assert [row[:-1] if row[-1] in stops else row for row in streamed] == per_token


def test_sync_every_below_one_is_refused() -> None:
    with pytest.raises(ZooError, match="sync_every"):
        GenerationConfig(sync_every=0)
