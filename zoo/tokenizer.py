"""A sentencepiece tokenizer with fixed special ids, trained from text and stored with the model."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm
import torch

TOKENIZER_FILE = "tokenizer.model"


class Tokenizer:
    """Sentencepiece wrapper. Special ids: pad 0, unk 1, bos 2, eos 3."""

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, model_proto: bytes) -> None:
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, model_type: str = "unigram",
              character_coverage: float = 1.0, max_sentences: int = 2_000_000) -> "Tokenizer":
        """Train on an iterable of texts (non-empty lines are used)."""
        buffer = io.BytesIO()
        lines = (line for text in texts for line in text.splitlines() if line.strip())
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines, model_writer=buffer, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, pad_id=cls.pad_id, unk_id=cls.unk_id, bos_id=cls.bos_id,
            eos_id=cls.eos_id, hard_vocab_limit=False, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, minloglevel=2, num_threads=2, byte_fallback=False,
        )
        return cls(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Load a ``tokenizer.model`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} not found")
        try:
            return cls(path.read_bytes())
        except RuntimeError as err:
            raise ValueError(f"{path} is not a sentencepiece model: {err}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.proto)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of one text, optionally framed by BOS/EOS."""
        ids = self.sp.encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def batch(self, texts: list[str], bos: bool = False, eos: bool = False, max_len: int | None = None,
              left_pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and pad: (ids (B, T) long, mask (B, T) bool True = real). Truncates to ``max_len``."""
        rows = [self.encode(t, bos, eos)[:max_len] if max_len else self.encode(t, bos, eos) for t in texts]
        return pad_ids(rows, self.pad_id, left_pad)

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Text of ids; special ids are dropped."""
        if torch.is_tensor(ids):
            ids = ids.tolist()
        return self.sp.decode([i for i in ids if i > self.eos_id])


def pad_ids(rows: list[list[int]], pad_id: int = 0, left_pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad lists of ids into (ids (B, T), mask (B, T)); ``left_pad`` for batched prompts."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        if not row:
            continue
        span = slice(width - len(row), width) if left_pad else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = True
    return ids, mask
