"""N-gram blocking (``no_repeat_ngram_size``): the ban equals transformers' processor, and greedy,
sampling and the flag path honour it (beam search: tests/test_beam_search_reference.py)."""
from __future__ import annotations

import argparse

import pytest
import torch

import zoo
from tasks.engine.flags import add_generation_arguments, generation_options
from tasks.engine.onnx_decode import check_options
from zoo.errors import ZooError
from zoo.generation import ban_repeated_ngrams, transformers_options

transformers = pytest.importorskip("transformers")

VOCAB = 60


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return zoo.create_model("text_decoder_tiny", "lm",
                            backbone_args={"vocab_size": VOCAB, "dim": 32, "depth": 2, "heads": 2}).eval()


def ngrams(row: list[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(row[i:i + size]) for i in range(len(row) - size + 1)]


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_the_ban_equals_transformers_processor_on_random_histories(size):
    generator = torch.Generator().manual_seed(size)
    processor = transformers.NoRepeatNGramLogitsProcessor(size)
    banned = 0
    for length in (1, size - 1, size, 7, 20):
        if length < 1:
            continue
        history = torch.randint(0, 6, (5, length), generator=generator)   # a small vocabulary: many repeats
        scores = torch.randn(5, 9, generator=generator)
        ours = ban_repeated_ngrams(scores, history, size)
        torch.testing.assert_close(ours, processor(history, scores.clone()), rtol=0, atol=0)
        banned += int(torch.isinf(ours).sum())
    assert banned > 0


def test_size_zero_changes_nothing():
    scores = torch.randn(2, 5)
    assert torch.equal(ban_repeated_ngrams(scores, torch.zeros(2, 6, dtype=torch.long), 0), scores)


def brute_force_greedy(lm, prompt: list[int], size: int, new: int) -> list[int]:
    """Greedy decoding by full forwards, each step skipping the tokens that repeat an n-gram (Python sets)."""
    row = list(prompt)
    for _ in range(new):
        logits = lm({"inputs": torch.tensor([row])})["logits"][0, -1]
        seen = set(ngrams(row, size))
        for token in logits.argsort(descending=True).tolist():
            if tuple(row[len(row) - size + 1:] + [token]) not in seen:
                row.append(token)
                break
    return row[len(prompt):]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_greedy_with_blocking_equals_brute_force(lm, size):
    prompts = [[5, 9, 11, 40, 7, 33, 21], [12, 13, 14], [8, 8, 8, 8]]
    changed = 0
    for prompt in prompts:
        blocked = lm.generate({"inputs": torch.tensor([prompt])}, stop_tokens=(), max_new_tokens=16,
                              no_repeat_ngram_size=size)[0]
        assert blocked == brute_force_greedy(lm, prompt, size, 16)
        changed += blocked != lm.generate({"inputs": torch.tensor([prompt])}, stop_tokens=(), max_new_tokens=16)[0]
    assert changed      # the plain greedy continuations repeat something


def test_sampling_with_blocking_repeats_no_ngram_and_without_it_does(lm):
    prompt = [5, 9, 11]
    options = {"stop_tokens": (), "max_new_tokens": 30, "temperature": 2.0, "seed": 3}
    blocked = lm.generate({"inputs": torch.tensor([prompt] * 4)}, no_repeat_ngram_size=1, **options)
    free = lm.generate({"inputs": torch.tensor([prompt] * 4)}, **options)
    assert all(len(set(prompt + row)) == len(prompt) + 30 for row in blocked)
    assert any(len(set(prompt + row)) < len(prompt) + 30 for row in free)


def test_the_flag_reaches_the_generation_options_and_refuses_negatives():
    parser = argparse.ArgumentParser()
    add_generation_arguments(parser)
    assert generation_options(parser.parse_args(["--no-repeat-ngram", "3"]))["no_repeat_ngram_size"] == 3
    assert generation_options(parser.parse_args([]))["no_repeat_ngram_size"] == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--no-repeat-ngram", "-1"])


def test_the_onnx_runtime_refuses_blocking_in_one_line():
    check_options(no_repeat_ngram_size=0)
    with pytest.raises(ZooError, match=r"^--no-repeat-ngram 2 \(n-gram blocking\) needs the PyTorch model"):
        check_options(no_repeat_ngram_size=2)


def test_transformers_spelling_reaches_the_blocking(lm):
    options = transformers_options({"num_beams": 3, "no_repeat_ngram_size": 1, "do_sample": False})
    assert options == {"beams": 3, "no_repeat_ngram_size": 1, "temperature": 0.0}
    row = lm.generate({"inputs": torch.tensor([[5, 9, 11]])}, stop_tokens=(), max_new_tokens=12, **options)[0]
    assert len(set([5, 9, 11] + row)) == 15
