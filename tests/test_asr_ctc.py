"""The CTC head: greedy and prefix beam decoding on hand-made scores, the loss, units and the registry."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import zoo
from heads.ctc import BLANK, DEFAULT_ALPHABET, greedy_decode, prefix_beam_search
from zoo.features import Features
from zoo.tokenizer import pad_ids

SPEECH = dict(dim=32, depth=1, heads=2, n_mels=40, conv_kernel=7)


def scores(*frames: list[float]) -> torch.Tensor:
    """(1, T, V) log-probabilities from rows of probabilities."""
    return torch.tensor([frames]).clamp(min=1e-12).log()


def labelling_probabilities(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """Every labelling's probability by brute force over all alignments of (T, V) scores."""
    steps, vocab = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab), repeat=steps):
        labels = tuple(u for i, u in enumerate(path) if u != BLANK and (i == 0 or path[i - 1] != u))
        totals[labels] = totals.get(labels, 0.0) + math.exp(sum(log_probs[t, u].item() for t, u in enumerate(path)))
    return totals


def test_greedy_collapses_repeats_removes_blanks_and_stops_at_the_length():
    # frames:      a     a     _     a     b     b     _     c    (c is past the length)
    best = [1, 1, 0, 1, 2, 2, 0, 3]
    log_probs = F.one_hot(torch.tensor([best]), 4).float().clamp(min=1e-6).log()
    assert greedy_decode(log_probs, torch.tensor([7])) == [[1, 1, 2]]
    assert greedy_decode(log_probs, torch.tensor([8])) == [[1, 1, 2, 3]]
    two = torch.cat([log_probs, log_probs.flip(1)])
    assert greedy_decode(two, torch.tensor([8, 3])) == [[1, 1, 2, 3], [3, 2]]  # reversed: c _ b


def test_beam_search_finds_the_most_probable_labelling_where_greedy_does_not():
    # the best path is "_ _" (0.36) but "a" owns 0.16 + 0.24 + 0.24 = 0.64 of the mass
    log_probs = scores([0.6, 0.4], [0.6, 0.4])
    assert greedy_decode(log_probs, torch.tensor([2])) == [[]]
    assert prefix_beam_search(log_probs, torch.tensor([2]), beams=2) == [[1]]


def test_beam_search_equals_brute_force_on_random_scores():
    torch.manual_seed(0)
    log_probs = (1.5 * torch.randn(6, 5, 4)).log_softmax(dim=-1)
    lengths = torch.tensor([5, 4, 5, 3, 1, 5])
    found = prefix_beam_search(log_probs, lengths, beams=64)
    for row, length, labels in zip(log_probs, lengths.tolist(), found):
        totals = labelling_probabilities(row[:length])
        assert totals[tuple(labels)] == pytest.approx(max(totals.values()))


def test_beam_one_equals_greedy_on_confident_scores():
    torch.manual_seed(1)
    best = torch.randint(0, 6, (4, 30))
    best[:, ::3] = BLANK
    log_probs = (F.one_hot(best, 6) * 6.0 + 0.5 * torch.randn(4, 30, 6)).log_softmax(dim=-1)
    lengths = torch.tensor([30, 17, 25, 1])
    assert prefix_beam_search(log_probs, lengths, beams=1) == greedy_decode(log_probs, lengths)
    assert prefix_beam_search(log_probs, lengths, beams=4) == greedy_decode(log_probs, lengths)


def test_loss_is_ctc_with_frame_and_target_lengths():
    torch.manual_seed(0)
    model = zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH)
    head = model.head
    tokens = torch.randn(2, 12, 32)
    mask = torch.arange(12)[None] < torch.tensor([[12], [7]])
    targets, target_mask = pad_ids([head.encode_text("oh two"), head.encode_text("one")])
    outputs = head(Features(tokens, mask), {})
    assert outputs["logits"].shape == (2, 12, len(DEFAULT_ALPHABET)) and outputs["lengths"].tolist() == [12, 7]
    loss = head.loss(outputs, {"targets": targets, "target_mask": target_mask})["loss"]
    log_probs = outputs["logits"].log_softmax(dim=-1)
    expected = torch.stack([
        F.ctc_loss(log_probs[0, :12], targets[0, :6], torch.tensor(12), torch.tensor(6), reduction="sum") / 6,
        F.ctc_loss(log_probs[1, :7], targets[1, :3], torch.tensor(7), torch.tensor(3), reduction="sum") / 3,
    ]).mean()
    assert torch.isfinite(loss) and torch.allclose(loss, expected, atol=1e-5)
    # a target longer than its frames is impossible: it counts zero instead of infinity
    long_targets, long_mask = pad_ids([head.encode_text("seven seven seven"), head.encode_text("one")])
    impossible = head.loss(outputs, {"targets": long_targets, "target_mask": long_mask})["loss"]
    assert torch.isfinite(impossible)


def test_head_units_arguments_and_errors():
    head = zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH).head
    ids = head.encode_text("don't stop")
    assert BLANK not in ids and head.ids_to_text(ids) == "don't stop"
    with pytest.raises(ValueError, match=r"'7' of 'route 7' is not in the alphabet"):
        head.encode_text("route 7")
    pieces = zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH, alphabet=None, vocab_size=50).head
    assert pieces.proj.out_features == 50
    with pytest.raises(ValueError, match="tokenizer"):
        pieces.encode_text("one")
    with pytest.raises(ValueError, match="needs an alphabet"):
        zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH, alphabet=None)
    with pytest.raises(ValueError, match="disagrees"):
        zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH, vocab_size=5)
    with pytest.raises(ValueError, match="accepts audio"):
        zoo.create_model("text_encoder_tiny", "ctc", backbone_args=dict(vocab_size=20, dim=32, depth=1, heads=2))


def test_decode_from_model_outputs_batched_equals_one_by_one():
    torch.manual_seed(0)
    model = zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH).eval()
    waves = 0.1 * torch.randn(3, 8000)
    mask = torch.arange(8000)[None] < torch.tensor([[8000], [5000], [3000]])
    batched = model({"inputs": waves, "mask": mask})
    for beams in (1, 3):
        rows = model.decode(batched, beams=beams)
        for i, length in enumerate((8000, 5000, 3000)):
            alone = model({"inputs": waves[i:i + 1, :length], "mask": None})
            assert model.decode(alone, beams=beams) == [rows[i]]
