"""Tokenizers stored with the model: sentencepiece (trained here) or Hugging Face ``tokenizers``.

Both kinds share one interface the tasks use: ``encode``/``batch``/``decode``, the ``pad_id``,
``unk_id``, ``bos_id``, ``eos_id`` special ids, ``vocab_size`` and ``save``. ``kind`` and ``file``
name how a checkpoint stores one (``config.json`` field ``tokenizer_kind``, file ``tokenizer``);
:func:`load_tokenizer` rebuilds it.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm
import torch

from zoo.errors import ZooError
from zoo.progress import working

TOKENIZER_FILE = "tokenizer.model"
HF_TOKENIZER_FILE = "tokenizer.json"
# special tokens of a tokenizers JSON, by role, in the spellings of common families (Llama, BERT, GPT-2)
_SPECIALS = {"unk": ("<unk>", "[UNK]", "<|endoftext|>"), "bos": ("<s>", "[CLS]", "<|endoftext|>"),
             "eos": ("</s>", "[SEP]", "<|endoftext|>"), "pad": ("<pad>", "[PAD]")}


class BaseTokenizer:
    """What every tokenizer kind provides; ``batch`` is shared."""

    kind: str
    file: str
    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of one text, optionally framed by BOS/EOS."""
        raise NotImplementedError

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Text of ids; special ids are dropped."""
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to the file ``path``."""
        raise NotImplementedError

    def offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's (start, stop) character span in it."""
        raise NotImplementedError

    def starts_word(self, token: int) -> bool:
        """Whether token ``token`` begins with a word boundary (sentencepiece's \u2581, byte-level BPE's \u0120)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hex digest of the stored tokenizer: equal for equal tokenizers (cache keys)."""
        raise NotImplementedError

    def __call__(self, texts: str | list[str], bos: bool = False, eos: bool = False, max_len: int | None = None,
                 left_pad: bool = False) -> dict[str, torch.Tensor]:
        """``{"input_ids": (B, T) long, "attention_mask": (B, T) bool}`` of a text or texts (one row per
        text, padded; see :meth:`batch`), the shape ``ZooModel.generate(**tokenizer(...))`` takes."""
        ids, mask = self.batch([texts] if isinstance(texts, str) else list(texts), bos, eos, max_len, left_pad)
        return {"input_ids": ids, "attention_mask": mask}

    def batch(self, texts: list[str], bos: bool = False, eos: bool = False, max_len: int | None = None,
              left_pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and pad: (ids (B, T) long, mask (B, T) bool True = real). Truncates to ``max_len``."""
        rows = [self.encode(t, bos, eos)[:max_len] if max_len else self.encode(t, bos, eos) for t in texts]
        return pad_ids(rows, self.pad_id, left_pad)


class Tokenizer(BaseTokenizer):
    """Sentencepiece wrapper. Special ids: pad 0, unk 1, bos 2, eos 3."""

    kind, file = "sentencepiece", TOKENIZER_FILE
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
        with working(f"training a {model_type} tokenizer ({vocab_size} pieces)"):
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
        """Write the sentencepiece model proto to ``path``."""
        Path(path).write_bytes(self.proto)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of one text, optionally framed by BOS/EOS."""
        ids = self.sp.encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Text of ids; special ids are dropped."""
        if torch.is_tensor(ids):
            ids = ids.tolist()
        return self.sp.decode([i for i in ids if i > self.eos_id])

    def offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoded = self.sp.encode_as_offset_mapping(text)
        return list(encoded["ids"]), [tuple(span) for span in encoded["offsets"]]

    def starts_word(self, token: int) -> bool:
        return self.sp.id_to_piece(token).startswith("\u2581")

    def fingerprint(self) -> str:
        return hashlib.sha1(self.proto).hexdigest()


class HFTokenizer(BaseTokenizer):
    """A Hugging Face ``tokenizers`` JSON (a transformers folder's ``tokenizer.json``, WordLlama's).

    Texts are encoded without the JSON's own post-processing (no special tokens added: BOS/EOS
    only when asked). Special ids are the JSON's tokens by role (``<unk>``/``[UNK]``,
    ``<s>``/``[CLS]``, ``</s>``/``[SEP]``, ``<pad>``/``[PAD]``); without a pad token, EOS pads (the
    mask hides padding). A tokenizer lacking a role's token is refused naming the role.
    """

    kind, file = "tokenizers", HF_TOKENIZER_FILE

    def __init__(self, text: str, source: str = "tokenizer JSON") -> None:
        from tokenizers import Tokenizer as Backend

        try:
            self.backend = Backend.from_str(text)
        except Exception as err:   # the library raises its own Exception subclass
            raise ZooError(f"{source}: not a tokenizers JSON ({' '.join(str(err).split())})") from None
        self.text = text
        ids = {role: next((i for t in spellings if (i := self.backend.token_to_id(t)) is not None), None)
               for role, spellings in _SPECIALS.items()}
        for role in ("unk", "bos", "eos"):
            if ids[role] is None:
                raise ZooError(f"{source}: no {role} token (looked for {', '.join(_SPECIALS[role])}); "
                               f"add it to the tokenizer's added_tokens")
        self.unk_id, self.bos_id, self.eos_id = ids["unk"], ids["bos"], ids["eos"]
        self.pad_id = ids["pad"] if ids["pad"] is not None else self.eos_id

    @classmethod
    def load(cls, path: str | Path) -> "HFTokenizer":
        """Load a ``tokenizer.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} not found")
        return cls(path.read_text(encoding="utf-8"), str(path))

    def save(self, path: str | Path) -> None:
        """Write the tokenizers JSON to ``path``."""
        Path(path).write_text(self.text, encoding="utf-8")

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of one text, optionally framed by BOS/EOS."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Text of ids; special ids are dropped."""
        if torch.is_tensor(ids):
            ids = ids.tolist()
        return self.backend.decode(ids, skip_special_tokens=True)

    def offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoded = self.backend.encode(text, add_special_tokens=False)
        return list(encoded.ids), [tuple(span) for span in encoded.offsets]

    def starts_word(self, token: int) -> bool:
        return (self.backend.id_to_token(token) or "").startswith(("\u2581", "\u0120"))

    def fingerprint(self) -> str:
        return hashlib.sha1(self.text.encode("utf-8")).hexdigest()


KINDS: dict[str, type[BaseTokenizer]] = {Tokenizer.kind: Tokenizer, HFTokenizer.kind: HFTokenizer}


def load_tokenizer(path: str | Path, kind: str = Tokenizer.kind) -> BaseTokenizer:
    """The tokenizer of kind ``kind`` stored in file ``path`` (FileNotFoundError when absent)."""
    if kind not in KINDS:
        raise ZooError(f"{path}: tokenizer kind {kind!r} is unknown; kinds: {', '.join(KINDS)}")
    return KINDS[kind].load(path)


def stored_tokenizer(directory: str | Path, config: dict) -> BaseTokenizer:
    """The tokenizer a model folder's (read, migrated) ``config`` names: fields ``tokenizer`` and
    ``tokenizer_kind`` (absent: sentencepiece, the only kind before the field)."""
    return load_tokenizer(Path(directory) / config["tokenizer"], config.get("tokenizer_kind") or Tokenizer.kind)


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
