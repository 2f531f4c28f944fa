"""Generation over the step protocol with a tiny causal decoder and the LM head."""
import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.generation import filter_logits, stream
from zoo.tokenizer import pad_ids


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return zoo.create_model("text_decoder_tiny", "lm", backbone_args=dict(vocab_size=60, dim=32, depth=2, heads=2)).eval()


PROMPTS = [[5, 9, 11, 40, 7, 3 + 30, 21], [12, 13, 14]]


def _one(lm, prompt, **options):
    return lm.generate({"inputs": torch.tensor([prompt])}, stop_tokens=(), max_new_tokens=8, **options)[0]


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_cached_greedy_equals_uncached(lm, cache):
    for prompt in PROMPTS:
        uncached = _one(lm, prompt, use_cache=False)
        assert _one(lm, prompt, static_cache=(cache == "static")) == uncached
        assert len(uncached) == 8


def test_beam_one_equals_greedy(lm):
    for prompt in PROMPTS:
        assert _one(lm, prompt, beams=1) == _one(lm, prompt)


def test_beam_search_finds_at_least_greedy_likelihood(lm):
    def logprob(prompt, continuation):
        ids = torch.tensor([prompt + continuation])
        logits = lm({"inputs": ids})["logits"].log_softmax(-1)[0]
        return sum(logits[len(prompt) - 1 + i, t].item() for i, t in enumerate(continuation))

    prompt = PROMPTS[0]
    greedy, beam = _one(lm, prompt), _one(lm, prompt, beams=4, length_penalty=0.0)
    assert logprob(prompt, beam) >= logprob(prompt, greedy) - 1e-4


def test_same_seed_same_sample_and_different_seed_differs(lm):
    first = _one(lm, PROMPTS[0], temperature=1.5, seed=7)
    assert _one(lm, PROMPTS[0], temperature=1.5, seed=7) == first
    others = {tuple(_one(lm, PROMPTS[0], temperature=1.5, seed=s)) for s in range(1, 6)}
    assert others - {tuple(first)}


def test_batched_prompts_of_different_lengths_equal_one_by_one(lm):
    inputs, mask = pad_ids(PROMPTS, left_pad=True)
    batched = lm.generate({"inputs": inputs, "mask": mask}, stop_tokens=(), max_new_tokens=8)
    assert batched == [_one(lm, p) for p in PROMPTS]


def test_stop_tokens_stop_and_streaming_matches(lm):
    full = _one(lm, PROMPTS[0])
    stop = full[3]
    stopped = lm.generate({"inputs": torch.tensor([PROMPTS[0]])}, stop_tokens=(stop,), max_new_tokens=8)[0]
    assert stopped == full[:full.index(stop)]
    streamed = [step[0] for step in stream(lm, {"inputs": torch.tensor([PROMPTS[0]])}, stop_tokens=(), max_new_tokens=8)]
    assert streamed == full


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept_k = torch.isfinite(filter_logits(logits, 1.0, top_k=2, top_p=1.0))
    assert kept_k.tolist() == [[True, True, False, False]]
    kept_p = torch.isfinite(filter_logits(logits, 1.0, top_k=0, top_p=0.7))
    assert kept_p.tolist() == [[True, True, False, False]]


def test_top_p_zero_keeps_the_most_likely_token_and_one_keeps_all():
    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]))
    kept = torch.isfinite(filter_logits(logits, 1.0, top_k=0, top_p=0.0))
    assert kept.tolist() == [[False, True, False], [True, False, False]]
    assert torch.equal(filter_logits(logits, 1.0, top_k=0, top_p=1.0), logits)


def test_top_k_beyond_the_vocabulary_keeps_every_token():
    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    assert torch.equal(filter_logits(logits, 1.0, top_k=10, top_p=1.0), logits)


def test_degenerate_sampling_options_give_the_greedy_tokens(lm):
    greedy = _one(lm, PROMPTS[0])
    assert _one(lm, PROMPTS[0], temperature=1.0, top_p=0.0, seed=0) == greedy
    assert _one(lm, PROMPTS[0], temperature=1e-12, seed=0) == greedy  # no NaN from 1 / temperature
    assert _one(lm, PROMPTS[0], temperature=1e-12, top_k=1000, top_p=0.5, seed=0) == greedy


def test_no_new_tokens_gives_one_empty_row_per_prompt(lm):
    inputs, mask = pad_ids(PROMPTS, left_pad=True)
    for beams in (1, 3):
        assert lm.generate({"inputs": inputs, "mask": mask}, max_new_tokens=0, beams=beams) == [[], []]


@pytest.mark.parametrize("option, value", [("max_new_tokens", -1), ("top_p", 1.5), ("top_k", -2),
                                           ("temperature", -0.1), ("beams", 0), ("no_repeat_ngram_size", -1)])
def test_out_of_range_options_name_themselves(lm, option, value):
    with pytest.raises(ZooError, match=rf"generation option {option}={value} is out of range"):
        lm.generate({"inputs": torch.tensor([PROMPTS[0]])}, **{option: value})


def test_lm_head_refuses_bidirectional_backbone():
    with pytest.raises(ValueError, match="causal"):
        zoo.create_model("text_encoder_tiny", "lm", backbone_args=dict(vocab_size=60, dim=32, depth=1, heads=2))
