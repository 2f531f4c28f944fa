"""SpecAugment on log-mel features: band and span counts and widths as configured, per utterance."""
from __future__ import annotations

import pytest
import torch

from zoo.stems import spec_augment

pytestmark = pytest.mark.usefixtures("one_thread")
BATCH, STEPS, MELS = 96, 120, 40


def _runs(flags: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D bool tensor."""
    runs, start = [], None
    for i, flag in enumerate(flags.tolist() + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def _augmented(freq_masks: int, freq_width: int, time_masks: int, time_ratio: float):
    """Random features of utterances 60..119 frames long, augmented: (feats, lengths, mask, out)."""
    torch.manual_seed(0)
    feats = torch.randn(BATCH, STEPS, MELS).abs() + 0.1    # (B, T, M), no zero of its own
    lengths = torch.arange(BATCH) % 60 + 60                # (B,)
    mask = torch.arange(STEPS)[None] < lengths[:, None]    # (B, T)
    return feats, lengths, mask, spec_augment(feats, mask, freq_masks, freq_width, time_masks, time_ratio)


@pytest.mark.parametrize("count", [1, 2])
def test_frequency_masks_zero_whole_bands_up_to_the_configured_width_and_count(count: int) -> None:
    feats, _, _, out = _augmented(freq_masks=count, freq_width=6, time_masks=0, time_ratio=0.0)
    zeroed = out == 0                                            # (B, T, M)
    assert torch.equal(out, feats * ~zeroed)                     # what is not masked is unchanged
    assert torch.equal(zeroed, zeroed[:, :1].expand_as(zeroed))  # a band covers every frame
    bands = [_runs(row) for row in zeroed[:, 0]]
    assert all(len(b) <= count and sum(width for _, width in b) <= 6 * count for b in bands)
    if count == 1:
        assert max(width for b in bands for _, width in b) == 6  # the configured width itself is drawn
    else:
        assert any(len(b) == 2 for b in bands)                   # separate bands, each drawn on its own


@pytest.mark.parametrize("count", [1, 2])
def test_time_masks_stay_inside_each_utterance_up_to_its_own_ratio(count: int) -> None:
    feats, lengths, mask, out = _augmented(freq_masks=0, freq_width=0, time_masks=count, time_ratio=0.1)
    zeroed = out == 0                                            # (B, T, M)
    assert torch.equal(out, feats * ~zeroed)
    assert torch.equal(zeroed, zeroed[:, :, :1].expand_as(zeroed))  # a span covers every mel bin
    assert not (zeroed[:, :, 0] & ~mask).any()                   # padding is never masked
    spans = [_runs(row) for row in zeroed[:, :, 0]]
    limits = [int(length * 0.1) for length in lengths.tolist()]  # 6..11 frames: each utterance's own bound
    assert all(len(s) <= count and sum(w for _, w in s) <= count * limit for s, limit in zip(spans, limits))
    if count == 1:
        assert any(s and s[0][1] == limit for s, limit in zip(spans, limits))  # the whole ratio is drawn
    else:
        assert any(len(s) == 2 for s in spans)


def test_no_masks_and_no_mask_tensor() -> None:
    feats = torch.randn(2, 30, 8)
    assert torch.equal(spec_augment(feats, None, 0, 5, 0, 0.2), feats)
    torch.manual_seed(1)
    out = spec_augment(feats, None, 0, 0, 1, 0.5)               # no frame mask: every frame is real
    spans = [_runs((row == 0).all(dim=1)) for row in out]
    assert all(len(s) <= 1 and all(w <= 15 for _, w in s) for s in spans) and any(spans)
