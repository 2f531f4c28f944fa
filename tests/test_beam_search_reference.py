"""Beam search equals transformers' ``generate(num_beams=K, early_stopping=False)`` on a random GPT-2,
with and without ``no_repeat_ngram_size``.

The GPT-2 is driven through a small step-protocol shim (``init_state`` / ``step`` / ``reorder``
over its own key-value cache), so both searches see the same next-token scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from zoo.generation import generate
from tests.text_generation_fixtures import one_thread  # noqa: F401  (autouse)

transformers = pytest.importorskip("transformers")

VOCAB, EOS, PAD = 64, 7, 3


@dataclass
class GPT2State:
    """The tokens fed first (B, T0), the tokens so far and the model's key-value cache."""

    start: torch.Tensor
    seen: torch.Tensor
    cache: Any = field(default=None)

    def reorder(self, index: torch.Tensor) -> None:
        self.start, self.seen = self.start[index], self.seen[index]
        if self.cache is not None:
            self.cache.reorder_cache(index)


class GPT2Steps:
    """The step protocol of :mod:`zoo.generation` over a transformers causal LM."""

    def init_state(self, model: SimpleNamespace, batch: dict[str, torch.Tensor], **options: Any) -> GPT2State:
        return GPT2State(batch["inputs"], batch["inputs"][:, :0])

    @torch.no_grad()
    def step(self, model: SimpleNamespace, tokens: torch.Tensor, state: GPT2State) -> tuple[torch.Tensor, GPT2State]:
        state.seen = torch.cat([state.seen, tokens], dim=1)
        if state.cache is None:
            state.cache = transformers.DynamicCache(config=model.gpt2.config)
        out = model.gpt2(input_ids=tokens, attention_mask=torch.ones_like(state.seen),
                         cache=state.cache, use_cache=True)
        return out.logits[:, -1], state


@pytest.fixture(scope="module")
def gpt2() -> Any:
    """A random tiny GPT-2 whose end-of-text token gets a steady boost, so it ends many beams."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD,
                                     initializer_range=0.2, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        direction = torch.randn(32)
        model.transformer.ln_f.bias.copy_(direction)
        model.lm_head.weight[EOS] = 0.12 * direction  # tied: the embedding of EOS changes with it
    return model


def hf_beam_search(gpt2: Any, prompt: list[int], beams: int, penalty: float, new: int,
                   early_stopping: bool | str, ngram: int = 0) -> list[int]:
    """transformers' continuation of ``prompt``, its end-of-text token removed."""
    inputs = torch.tensor([prompt])
    out = gpt2.generate(inputs, attention_mask=torch.ones_like(inputs), num_beams=beams, length_penalty=penalty,
                        early_stopping=early_stopping, do_sample=False, eos_token_id=EOS, pad_token_id=PAD,
                        max_new_tokens=new, num_return_sequences=1, no_repeat_ngram_size=ngram)
    continuation = out[0, len(prompt):].tolist()
    return continuation[:continuation.index(EOS)] if EOS in continuation else continuation


def ours(gpt2: Any, prompt: list[int], beams: int, penalty: float, new: int, exact: bool,
         ngram: int = 0) -> list[int]:
    model = SimpleNamespace(head=GPT2Steps(), gpt2=gpt2)
    return generate(model, {"inputs": torch.tensor([prompt])}, beams=beams, length_penalty=penalty,
                    stop_tokens=(EOS,), max_new_tokens=new, exact_stop=exact, no_repeat_ngram_size=ngram)[0]


def prompts(count: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(8, VOCAB, (int(torch.randint(1, 7, (1,), generator=generator)),),
                          generator=generator).tolist() for _ in range(count)]


def test_beam_search_equals_transformers_on_a_grid(gpt2: Any) -> None:
    cases = differences = ended = 0
    for prompt in prompts(10):
        for beams in (2, 3, 4):
            for penalty in (0.6, 1.0, 2.0):
                expected = hf_beam_search(gpt2, prompt, beams, penalty, 12, early_stopping=False)
                differences += ours(gpt2, prompt, beams, penalty, 12, exact=False) != expected
                cases += 1
                ended += len(expected) < 12
    assert cases == 90 and differences == 0
    assert 20 <= ended <= 80  # EOS ends many of the searches, but not all of them


def test_exact_stop_equals_transformers_never(gpt2: Any) -> None:
    changed = 0
    for prompt in prompts(8):
        for beams, penalty in ((2, 1.0), (3, 2.0), (4, 0.6), (3, -0.5)):
            expected = hf_beam_search(gpt2, prompt, beams, penalty, 12, early_stopping="never")
            assert ours(gpt2, prompt, beams, penalty, 12, exact=True) == expected
            changed += expected != hf_beam_search(gpt2, prompt, beams, penalty, 12, early_stopping=False)
    assert changed  # the exact bound finds hypotheses the heuristic stops before


def test_beam_search_with_ngram_blocking_equals_transformers(gpt2: Any) -> None:
    changed = 0
    for prompt in prompts(10):
        for penalty in (0.6, 1.0):
            expected = hf_beam_search(gpt2, prompt, 4, penalty, 16, early_stopping=False, ngram=2)
            assert ours(gpt2, prompt, 4, penalty, 16, exact=False, ngram=2) == expected
            grams = [tuple(expected[i:i + 2]) for i in range(len(expected) - 1)]
            assert len(set(grams)) == len(grams)
            changed += expected != hf_beam_search(gpt2, prompt, 4, penalty, 16, early_stopping=False)
    assert changed  # blocking changes some of the searches
