"""The raw characters each token of a stream stands for (bits per character's denominator)."""
from __future__ import annotations

import pytest
import torch

import zoo
from tasks.text_generation.metrics import evaluate_blocks, raw_characters
from zoo.tokenizer import Tokenizer

TRAIN = ["the cat sat on the mat.", "a dog ran to the park.", "my hat is red and old."] * 20


def test_each_document_stands_for_its_raw_length_plus_one() -> None:
    tokenizer = Tokenizer.train(TRAIN, vocab_size=40)
    texts = ["the  cat\nsat   on the mat\u2026", "  leading and trailing  ", "", "zebra \uff54\uff48\uff45 qx", "   "]
    ids, characters = raw_characters(tokenizer, texts)
    eos = [i for i, token in enumerate(ids) if token == tokenizer.eos_id]
    assert len(eos) == len(texts) and len(characters) == len(ids)
    starts = [0] + [i + 1 for i in eos[:-1]]
    for text, start, end in zip(texts, starts, eos):
        assert ids[start:end] == tokenizer.encode(text)
        assert sum(characters[start:end + 1]) == len(text) + 1
    assert min(characters) >= 0
    # by hand: a "▁" stands for the run of white space it folds, the three "." of "\u2026" for it
    pieces = [tokenizer.sp.id_to_piece(token) for token in ids[:eos[0]]]
    spans = [sum(characters[:i]) for i in range(eos[0] + 1)]
    slices = [texts[0][a:b] for a, b in zip(spans, spans[1:])]
    assert list(zip(pieces, slices)) == [
        ("▁t", "t"), ("h", "h"), ("e", "e"), ("▁", "  "), ("c", "c"), ("at", "at"), ("▁", "\n"), ("s", "s"),
        ("at", "at"), ("▁o", "   o"), ("n", "n"), ("▁t", " t"), ("h", "h"), ("e", "e"), ("▁m", " m"),
        ("at", "at"), (".", ""), (".", ""), (".", "\u2026")]


def test_blocks_of_other_texts_are_refused() -> None:
    tokenizer = Tokenizer.train(TRAIN, vocab_size=40)
    backbone = zoo.create_backbone("text_decoder_tiny", vocab_size=tokenizer.vocab_size, dim=16, depth=1, heads=2)
    model = zoo.ZooModel(backbone, zoo.create_head("lm", backbone), tokenizer, {"block_size": 4})
    blocks = torch.tensor([tokenizer.encode("the cat sat")[:5]])
    with pytest.raises(ValueError, match="not the token stream of these texts"):
        evaluate_blocks(model, blocks, ["a dog ran"], batch_size=2)
