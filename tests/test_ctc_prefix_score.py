"""CTC prefix scores against brute force: summing every alignment of a few frames."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from heads.ctc_prefix_score import CTCPrefixScorer

BLANK, EOS, VOCAB = 0, 3, 4


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    merged = [unit for i, unit in enumerate(path) if i == 0 or unit != path[i - 1]]
    return tuple(unit for unit in merged if unit != BLANK)


def brute_force(log_probs: torch.Tensor, prefix: tuple[int, ...], whole: bool) -> float:
    """log P(transcript starts with ``prefix``), or with ``whole`` log P(transcript == prefix), over (T, V)."""
    total = 0.0
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        labels = collapse(path)
        if labels == prefix if whole else labels[:len(prefix)] == prefix:
            total += math.exp(sum(float(log_probs[t, unit]) for t, unit in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def scores_of(scorer: CTCPrefixScorer, row: int, prefix: tuple[int, ...]) -> torch.Tensor:
    """Scores (VOCAB,) of ``prefix`` + every token, walking the prefix one select at a time."""
    state = scorer.initial(torch.tensor([row]))
    everything = torch.arange(VOCAB)[None, :]  # (1, V)
    for token in prefix:
        extended = scorer.extend(state, everything)
        state = scorer.select(state, everything, extended, torch.tensor([0]), torch.tensor([token]))
    return scorer.extend(state, everything)[0][0]


@pytest.mark.parametrize("prefix", [(), (1,), (1, 1), (2, 1), (1, 2, 2)])
def test_prefix_scores_equal_the_sum_over_alignments(prefix: tuple[int, ...]) -> None:
    log_probs = torch.randn(1, 5, VOCAB, generator=torch.Generator().manual_seed(len(prefix))).log_softmax(-1)
    scores = scores_of(CTCPrefixScorer(log_probs, torch.tensor([5]), eos=EOS, blank=BLANK), 0, prefix)
    for token in (1, 2):
        assert scores[token].item() == pytest.approx(brute_force(log_probs[0], prefix + (token,), whole=False), abs=1e-5)
    assert scores[EOS].item() == pytest.approx(brute_force(log_probs[0], prefix, whole=True), abs=1e-5)
    assert scores[BLANK].item() == float("-inf")


def test_padded_frames_leave_a_shorter_utterance_unchanged() -> None:
    log_probs = torch.randn(2, 6, VOCAB, generator=torch.Generator().manual_seed(7)).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([6, 4]), eos=EOS, blank=BLANK)
    scores = scores_of(scorer, 1, (2,))
    assert scores[1].item() == pytest.approx(brute_force(log_probs[1, :4], (2, 1), whole=False), abs=1e-5)
    assert scores[EOS].item() == pytest.approx(brute_force(log_probs[1, :4], (2,), whole=True), abs=1e-5)


def test_a_prefix_longer_than_the_frames_allow_is_impossible() -> None:
    log_probs = torch.randn(1, 2, VOCAB, generator=torch.Generator().manual_seed(3)).log_softmax(-1)
    scores = scores_of(CTCPrefixScorer(log_probs, torch.tensor([2]), eos=EOS, blank=BLANK), 0, (1, 2))
    assert scores[1].item() == float("-inf")  # three labels cannot fit in two frames
    assert scores[EOS].item() == pytest.approx(brute_force(log_probs[0], (1, 2), whole=True), abs=1e-5)


def test_hypotheses_and_candidates_batch_as_one_at_a_time() -> None:
    log_probs = torch.randn(2, 5, VOCAB, generator=torch.Generator().manual_seed(11)).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([5, 3]), eos=EOS, blank=BLANK)
    state = scorer.initial(torch.tensor([0, 1, 1]))
    candidates = torch.tensor([[1, 2], [2, EOS], [1, 1]])  # (N, K): a subset per hypothesis
    extended = scorer.extend(state, candidates)
    state = scorer.select(state, candidates, extended, torch.tensor([0, 1, 2]), torch.tensor([1, 0, 0]))
    batched = scorer.extend(state, torch.tensor([[1, EOS]] * 3))[0]  # (3, 2)
    for i, (row, prefix) in enumerate([(0, (2,)), (1, (2,)), (1, (1,))]):
        alone = scores_of(scorer, row, prefix)
        assert torch.allclose(batched[i], alone[[1, EOS]], atol=1e-6)
