"""Documents as fixed-length token blocks, cut once the model (and so its tokenizer) is known.

A text-generation data set is read before its tokenizer exists (the tokenizer is trained from
the training split, or loaded with a checkpoint), so the formats give documents
(:class:`~tasks.text_generation.formats.TextDataset`) and :class:`TextBlocks` serves them as the
blocks of one tokenizer and block size, those of the model the task is handed
(``TextGenerationTask.for_model``).
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Sequence

import torch
from torch.utils.data import Dataset

from zoo.tokenizer import BaseTokenizer

if TYPE_CHECKING:
    from tasks.text_generation.formats import TextDataset


def pack_blocks(docs: Sequence[Sequence[int]], block_size: int, eos_id: int) -> torch.Tensor:
    """Concatenate token ids, each document followed by ``eos_id``, and cut fixed blocks.

    Returns a LongTensor (N, block_size + 1); use ``[:, :-1]`` as inputs and ``[:, 1:]`` as
    targets. Consecutive blocks share one token (block i ends where block i + 1 starts), so
    every token after the first is a target exactly once; the last partial block is dropped.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    ids = itertools.chain.from_iterable([*doc, eos_id] for doc in docs)
    stream = torch.tensor(list(ids), dtype=torch.long)  # (L,)
    n_blocks = (stream.numel() - 1) // block_size
    if n_blocks < 1:
        raise ValueError(f"too few tokens to pack one block: {len(docs)} documents give {stream.numel()} tokens "
                         f"(with an end-of-text token after each), and one block of {block_size} needs "
                         f"{block_size + 1}; use more text or a smaller block size")
    stream = stream[: n_blocks * block_size + 1]  # (N * block_size + 1,)
    return stream.unfold(0, block_size + 1, block_size).contiguous()  # (N, block_size + 1)


class TextBlocks(Dataset):
    """Samples ``{"block": LongTensor (block_size + 1,)}``: consecutive windows of the token stream
    of ``documents`` (see :meth:`TextDataset.blocks`) for ``tokenizer`` and ``block_size``.

    ``texts``, ``source``, ``skipped`` and :meth:`blocks` are those of the documents.
    """

    def __init__(self, documents: TextDataset, tokenizer: BaseTokenizer, block_size: int) -> None:
        if block_size < 1:
            raise ValueError(f"block size must be at least 1, got {block_size}")
        self.documents, self.tokenizer, self.block_size = documents, tokenizer, block_size
        self.texts, self.source, self.skipped = documents.texts, documents.source, documents.skipped

    def blocks(self, tokenizer: BaseTokenizer, block_size: int) -> torch.Tensor:
        """The documents' blocks (N, size + 1) for another tokenizer or size (cached by the documents)."""
        return self.documents.blocks(tokenizer, block_size)

    def __len__(self) -> int:
        return self.blocks(self.tokenizer, self.block_size).shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"block": self.blocks(self.tokenizer, self.block_size)[index]}
