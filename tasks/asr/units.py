"""The output units of an ASR model: characters of the CTC head's alphabet, or a sentencepiece
tokenizer stored with the model (the seq2seq head, or CTC with ``--units sentencepiece``).

Both turn a normalised transcript into the ``targets`` (B, L) / ``target_mask`` of the batch
contract (no BOS/EOS) and decoded ids back into text.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from heads.ctc import DEFAULT_ALPHABET
from zoo.multihead import MultiHeadModel
from zoo.tokenizer import Tokenizer, pad_ids

UNITS = ("char", "sentencepiece")


def alphabet_for(texts: Iterable[str]) -> str:
    """The default alphabet (blank, space, apostrophe, a-z) plus any other character of ``texts``, sorted."""
    extra = set().union(*map(set, texts)) - set(DEFAULT_ALPHABET)
    return DEFAULT_ALPHABET + "".join(sorted(extra))


def build_units(head: str, units: str, texts: list[str], vocab_size: int) -> tuple[dict[str, Any], Tokenizer | None]:
    """Head arguments and tokenizer (or None) for ``units`` learnt from the training transcripts.

    The CTC head with character units keeps its alphabet in its arguments; every other case
    trains a sentencepiece tokenizer (``model_type="char"`` for character units of a
    seq2seq head) and sizes the head's vocabulary to it.
    """
    if units not in UNITS:
        raise ValueError(f"unknown --units {units!r}; expected one of {', '.join(UNITS)}")
    if head == "ctc" and units == "char":
        return {"alphabet": alphabet_for(texts)}, None
    tokenizer = Tokenizer.train(texts, vocab_size, model_type="char" if units == "char" else "unigram")
    args: dict[str, Any] = {"vocab_size": tokenizer.vocab_size}
    if head == "ctc":
        args["alphabet"] = None   # blank = the tokenizer's pad id 0
    return args, tokenizer


def _alphabet_head(model: torch.nn.Module) -> Any:
    """The CTC head holding the character alphabet, or None (sentencepiece units: a hybrid's heads share them)."""
    if isinstance(model, MultiHeadModel):
        return None
    head = model.head
    return head if getattr(head, "alphabet", None) is not None else None


def encode_targets(model: torch.nn.Module, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``targets`` (B, L) unit ids (no BOS/EOS) and ``target_mask`` (B, L) of transcripts."""
    head = _alphabet_head(model)
    if head is not None:
        rows = [head.encode_text(text) for text in texts]
    elif model.tokenizer is not None:
        rows = [model.tokenizer.encode(text) for text in texts]
    else:
        raise ValueError("this model has neither a character alphabet nor a tokenizer to write transcripts with")
    return pad_ids(rows)


def ids_to_text(model: torch.nn.Module, ids: list[int]) -> str:
    """The text of decoded unit ids."""
    head = _alphabet_head(model)
    if head is not None:
        return head.ids_to_text(ids)
    if model.tokenizer is None:
        raise ValueError("this model has neither a character alphabet nor a tokenizer to read its output with")
    return model.tokenizer.decode(ids)
