"""Batches of similar lengths shared by the text and speech tasks: bucketed for training, sorted for evaluation."""
from __future__ import annotations

import pytest
import torch

from tasks.engine.batching import length_bucketed_batches, length_sorted_batches


def test_batches_cover_every_index_once_with_similar_lengths_and_repeat_with_the_seed() -> None:
    lengths = torch.randint(1, 1000, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    batches = length_bucketed_batches(lengths, 10, torch.Generator().manual_seed(1), pool_batches=20)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert all(len(batch) == 10 for batch in batches)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 60  # random batches of 10 from 1..1000 spread about 800
    assert batches == length_bucketed_batches(lengths, 10, torch.Generator().manual_seed(1), pool_batches=20)
    assert batches != length_bucketed_batches(lengths, 10, torch.Generator().manual_seed(2), pool_batches=20)
    with pytest.raises(ValueError, match="positive"):
        length_bucketed_batches(lengths, 0, torch.Generator(), pool_batches=20)


def test_sorted_batches_ascend_keep_ties_in_index_order_and_cover_every_index_once() -> None:
    lengths = torch.randint(8000, 160000, (103,), generator=torch.Generator().manual_seed(0)).tolist()
    batches = length_sorted_batches(lengths, 8)
    assert [len(batch) for batch in batches] == [8] * 12 + [7]
    assert [lengths[i] for batch in batches for i in batch] == sorted(lengths)
    assert length_sorted_batches([3, 1, 3, 1], 3) == [[1, 3, 0], [2]]
    with pytest.raises(ValueError, match="positive"):
        length_sorted_batches(lengths, 0)
