"""The translation baseline: a word-by-word dictionary learnt from the training pairs (`zoo demo`).

Words are the whitespace-separated pieces of a sentence. Each source word is translated by the
target word it is most associated with over the training pairs, by the Dice coefficient
2 c(s, t) / (c(s) + c(t)) of the numbers of pairs holding s, t and both (ties: the more frequent
pair, then the first in alphabetical order); a word never seen in training is copied. The
translations are scored by the task's own :func:`scores` (sacrebleu BLEU, chrF, exact match).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from tasks.translation.evaluation import scores
from tasks.translation.task import _pairs

NAME = "word-by-word dictionary"


def learn_dictionary(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """{source word: the target word of highest Dice coefficient with it} over (source, target) pairs."""
    sources, targets, together = Counter(), Counter(), Counter()
    for source, target in pairs:
        source_words, target_words = set(source.split()), set(target.split())
        sources.update(source_words)
        targets.update(target_words)
        together.update((s, t) for s in source_words for t in target_words)
    candidates: dict[str, list[str]] = defaultdict(list)
    for s, t in together:
        candidates[s].append(t)

    def rank(s: str, t: str) -> tuple[float, int, str]:
        return -2 * together[s, t] / (sources[s] + targets[t]), -together[s, t], t

    return {s: min(words, key=lambda t: rank(s, t)) for s, words in candidates.items()}


def translate_words(dictionary: dict[str, str], sentence: str) -> str:
    """``sentence`` word by word through ``dictionary`` (unknown words copied)."""
    return " ".join(dictionary.get(word, word) for word in sentence.split())


def score(train: Dataset, test: Dataset) -> dict[str, Any]:
    """The task's scores of the dictionary learnt from ``train``'s pairs, translating ``test``'s sources."""
    dictionary = learn_dictionary(_pairs(train))
    pairs = _pairs(test)
    return scores([translate_words(dictionary, source) for source, _ in pairs], [target for _, target in pairs])
