"""CTC prefix beam search against a plain reference that keys prefixes by their tuple of units.

Long outputs are the point: a hashed prefix identity (the old ``h * (V + 1) + u mod 2**40``
with an even base) forgets units ~40 places back and merges different prefixes.
"""
from __future__ import annotations

import math

import pytest
import torch

from heads.ctc import BLANK, DEFAULT_ALPHABET, prefix_beam_scores, prefix_beam_search


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def reference_prefix_beam_search(log_probs: torch.Tensor, beams: int) -> tuple[tuple[int, ...], float]:
    """Textbook prefix beam search over (T, V) scores, every unit considered, prefixes as tuples."""
    frames = log_probs.tolist()
    kept: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (p_b, p_nb)
    for frame in frames:
        grown: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], blank: float, unit: float) -> None:
            entry = grown.setdefault(prefix, [-math.inf, -math.inf])
            entry[0], entry[1] = _logaddexp(entry[0], blank), _logaddexp(entry[1], unit)

        for prefix, (p_b, p_nb) in kept.items():
            total = _logaddexp(p_b, p_nb)
            add(prefix, total + frame[BLANK], -math.inf)
            if prefix:
                add(prefix, -math.inf, p_nb + frame[prefix[-1]])
            for unit, score in enumerate(frame):
                if unit == BLANK:
                    continue
                source = p_b if prefix and prefix[-1] == unit else total
                add(prefix + (unit,), -math.inf, source + score)
        best = sorted(grown.items(), key=lambda item: _logaddexp(*item[1]), reverse=True)[:beams]
        kept = {prefix: (p_b, p_nb) for prefix, (p_b, p_nb) in best}
    prefix, (p_b, p_nb) = max(kept.items(), key=lambda item: _logaddexp(*item[1]))
    return prefix, _logaddexp(p_b, p_nb)


def peaked_scores(seed: int, rows: int, frames: int, vocab: int) -> torch.Tensor:
    """(B, T, V) float64 log-probabilities: each frame favours a random unit (a third of them the
    blank) and keeps a close rival, so outputs are long and the beam holds near-equal prefixes."""
    generator = torch.Generator().manual_seed(seed)
    favourite = torch.randint(0, vocab, (rows, frames), generator=generator)
    favourite[torch.rand(rows, frames, generator=generator) < 0.33] = BLANK
    rival = torch.randint(0, vocab, (rows, frames), generator=generator)
    logits = torch.randn(rows, frames, vocab, generator=generator, dtype=torch.float64)
    logits += 4.0 * torch.nn.functional.one_hot(favourite, vocab)
    logits += 3.0 * torch.nn.functional.one_hot(rival, vocab)
    return logits.log_softmax(dim=-1)


@pytest.mark.parametrize("seed", range(4))
def test_long_outputs_equal_the_tuple_keyed_reference(seed: int) -> None:
    vocab, frames, beams = len(DEFAULT_ALPHABET), 160, 8
    log_probs = peaked_scores(seed, rows=3, frames=frames, vocab=vocab)
    lengths = torch.tensor([frames, frames - 25, 120])
    found = prefix_beam_scores(log_probs, lengths, beams=beams)
    for row, length, (units, score) in zip(log_probs, lengths.tolist(), found):
        expected, expected_score = reference_prefix_beam_search(row[:length], beams)
        assert len(expected) >= 50  # long enough for a 40-unit hash window to matter
        assert units == list(expected)
        assert score == pytest.approx(expected_score, abs=1e-9)


def test_float32_scores_decode_like_float64_and_transcripts_match_the_scores() -> None:
    log_probs = peaked_scores(11, rows=2, frames=130, vocab=len(DEFAULT_ALPHABET))
    lengths = torch.tensor([130, 130])
    assert prefix_beam_search(log_probs.float(), lengths, beams=4) == [
        units for units, _ in prefix_beam_scores(log_probs, lengths, beams=4)]
