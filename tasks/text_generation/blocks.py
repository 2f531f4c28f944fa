"""Documents as fixed-length token blocks, cut once the model (and so its tokenizer) is known.

A text-generation data set is read before its tokenizer exists (the tokenizer is trained from
the training split, or loaded with a checkpoint), so :class:`TextBlocks` keeps the documents and
packs them with :func:`tasks.text_generation.data.pack_blocks` on first use. Which tokenizer and
block size apply is held by one :class:`BlockLayout` that every data set of a task shares; the
task sets it when it builds a model or is handed one.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from tasks.text_generation.data import TextDataset, pack_blocks
from zoo.tokenizer import BaseTokenizer


class BlockLayout:
    """The tokenizer and block size the data sets of one task instance are packed with."""

    def __init__(self) -> None:
        self.tokenizer: BaseTokenizer | None = None
        self.block_size = 0

    def set(self, tokenizer: BaseTokenizer, block_size: int) -> None:
        """Use ``tokenizer`` and ``block_size`` (tokens per block) from now on."""
        if block_size < 1:
            raise ValueError(f"block size must be at least 1, got {block_size}")
        self.tokenizer, self.block_size = tokenizer, block_size


class TextBlocks(Dataset):
    """Samples ``{"block": LongTensor (block_size + 1,)}``: consecutive windows of the token stream.

    The stream is every document's tokens followed by EOS. A set too small for one block is cut
    into a single shorter block (all of it), so tiny validation sets still evaluate; a set of
    fewer than two tokens raises.
    """

    def __init__(self, documents: TextDataset, layout: BlockLayout) -> None:
        self.texts, self.source, self.skipped = documents.texts, documents.source, documents.skipped
        self.layout = layout
        self._key: tuple[str, int] | None = None
        self._blocks: torch.Tensor | None = None

    def blocks(self, tokenizer: BaseTokenizer, block_size: int) -> torch.Tensor:
        """All blocks (N, size + 1) for this tokenizer and block size (tokenized once, then cached)."""
        key = (tokenizer.fingerprint(), block_size)
        if key != self._key:
            docs = [tokenizer.encode(text) for text in self.texts]
            tokens = sum(len(doc) + 1 for doc in docs)  # + EOS after each
            if tokens < 2:
                raise ValueError(f"{self.source}: fewer than two tokens, nothing to predict")
            self._blocks = pack_blocks(docs, min(block_size, tokens - 1), tokenizer.eos_id)
            self._key = key
        return self._blocks

    def _current(self) -> torch.Tensor:
        layout = self.layout
        if layout.tokenizer is None:
            raise RuntimeError(f"{self.source}: no tokenizer yet; the task packs its data sets into blocks "
                               "once it has built or been given a model (build_model, make_collate, evaluate)")
        return self.blocks(layout.tokenizer, layout.block_size)

    def __len__(self) -> int:
        return self._current().shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"block": self._current()[index]}
