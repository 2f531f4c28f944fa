"""Batches of similar lengths: shuffled buckets for training (as fairseq and ESPnet batch), sorted for evaluation."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                            pool_batches: int) -> list[list[int]]:
    """Indices of ``lengths`` cut into shuffled batches of similar length.

    The indices are shuffled, taken in pools of ``pool_batches`` batches, each pool sorted by
    length (ties keep the shuffled order) and cut into batches of ``batch_size``; then the order
    of all batches is shuffled. Every index appears exactly once.
    """
    if batch_size <= 0 or pool_batches <= 0:
        raise ValueError(f"batch_size and pool_batches must be positive, got {batch_size} and {pool_batches}")
    permutation = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * pool_batches
    batches: list[list[int]] = []
    for start in range(0, len(permutation), pool):
        chunk = sorted(permutation[start:start + pool], key=lengths.__getitem__)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length (ties in index order) and cut into batches of
    ``batch_size``, in that order: evaluation batches with little padding."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return ordered_chunks(sorted(range(len(lengths)), key=lengths.__getitem__), batch_size)


def ordered_chunks(order: list[int], batch_size: int) -> list[list[int]]:
    """``order`` cut into consecutive batches of ``batch_size`` indices (the last may be shorter)."""
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def in_order(batches: Iterable[tuple[Sequence[int], Iterable[Any]]]) -> list[Any]:
    """The outputs of batches of sample indices, ``(indices, their outputs)`` each, back in index order."""
    placed = {i: output for rows, outputs in batches for i, output in zip(rows, outputs)}
    return [placed[i] for i in range(len(placed))]
