"""The built-in translation sets (``zoo data prepare translation``), the only translation code that fetches.

Each is cached as ``train.tsv``, ``validation.tsv`` and ``test.tsv`` and read back through the
TSV adapter:

- ``default``: the King James Bible (Debian ``sword-text-kjv``) paired verse by verse
  with the Reina-Valera 1909 (``sword-text-sparv``), read with ``pysword``. Both modules
  use the KJV versification, so (book, chapter, verse) keys line up; whole chapters are
  held out for validation and test, so no held-out verse has a neighbour in training, and a
  verse repeated word for word elsewhere ("The word of the LORD came unto me, saying,") is
  dropped from training (and from validation when test holds it).
- ``numbers``: integers written in English and in French by ``num2words``.
"""
from __future__ import annotations

import html
import random
import re
import tempfile
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Callable

from num2words import num2words
from pysword.modules import SwordModules

from tasks.engine.data import debian_package_root, write_tsv
from tasks.engine.sets import BUILTIN_SPLITS, BuiltinSet
from tasks.translation.formats import SEED, Pair, TranslationDataset, read_tsv

VERSION = "2"  # 2: a verse text repeated in another chapter is kept in its held-out split only

VerseKey = tuple[str, int, int]  # (OSIS book name, chapter, verse)


def _prepared(build: Callable[[], dict[str, list[Pair]]]) -> Callable[[Path], str]:
    """A set's builder: the pairs of ``build()`` written as one TSV file per split."""
    def write(folder: Path) -> str:
        splits = build()
        for split, pairs in splits.items():
            write_tsv(folder / f"{split}.tsv", pairs)
        return " / ".join(f"{len(pairs):,} {split}" for split, pairs in splits.items()) + " pairs"

    return write


def _read_prepared(name: str) -> Callable[[Path, str], TranslationDataset]:
    """A set's reader: one split's TSV file of the prepared folder."""
    def read(folder: Path, split: str) -> TranslationDataset:
        path = folder / f"{split}.tsv"
        return TranslationDataset(read_tsv(str(path), {}), f"builtin:{name} [{split}] ({path})")

    return read


def _build_numbers() -> dict[str, list[Pair]]:
    """0..9,999 plus 2,000 seeded larger numbers, in English and French; 90/5/5 split by number."""
    rng = random.Random(SEED)
    numbers = list(range(10_000)) + rng.sample(range(10_000, 1_000_000), 2_000)
    rng.shuffle(numbers)
    n_held = len(numbers) // 20
    groups = {"train": numbers[2 * n_held:], "validation": numbers[:n_held], "test": numbers[n_held:2 * n_held]}
    return {
        split: [(num2words(n), num2words(n, lang="fr")) for n in sorted(group)]
        for split, group in groups.items()
    }


# (Debian package, SWORD module) of each side of the default set.
_KJV = ("sword-text-kjv", "engKJV2006eb")
_RV1909 = ("sword-text-sparv", "spaRV1909eb")

_NOTE = re.compile(r"<note\b.*?</note>", re.S)
# Editorial headings (Psalm 119's acrostic letters, the epistles' closing subscriptions) are
# dropped; canonical titles (the Psalm superscriptions) are part of verse 1 in the Spanish text.
_EDITORIAL_TITLE = re.compile(r"<title\b(?![^>]*canonical=\"true\")[^>]*>.*?</title>", re.S)
_TAG = re.compile(r"<[^>]*>")
_USFM_MARKER = re.compile(r"\\\+?[a-z]+\d*\*?")  # stray USFM codes left in the KJV module (`\nd JEHOVAH`)
# The RV1909 module often writes an added word (<transChange>) flush against its neighbours
# ("engendró<transChange>un hijo</transChange><w>á su"): those boundaries get a space, except
# an added enclitic pronoun after a verb form (infinitive -r, imperative -d/-z, gerund -ndo, or
# the written accent RV1909 puts on verb + enclitic): "sáca" + "lo" is "sácalo". A capitalised
# word inside a sentence is a name, not a verb: "Jehová" + "los" stays two words.
_OPEN, _CLOSE = "\x02", "\x03"
_ENCLITIC = re.compile(r"(?<!\w)(\w*(?:[áéíóú]\w*|[rdz]|ndo))\x02((?:me|te|se|nos|os|lo|la|los|las|le|les)+)\x03")
_GLUED = re.compile(r"(?<=\w)[\x02\x03]+(?=\w)")


def _join_enclitic(match: re.Match) -> str:
    """``verb<OPEN>clitic<CLOSE>`` -> ``verbclitic<CLOSE>``, unless the "verb" is a name."""
    verb, clitic = match.groups()
    before = match.string[:match.start()].rstrip(" ¿¡" + _OPEN + _CLOSE)
    if verb[0].isupper() and before and before[-1] not in ".:;?!":
        return match.group(0)
    return verb + clitic + _CLOSE


def _clean_verse(osis: str) -> str:
    """Plain text of one OSIS verse: no notes, tags, ``¶`` marks or repeated whitespace."""
    text = _EDITORIAL_TITLE.sub(" ", _NOTE.sub("", osis))
    text = re.sub(r"<transChange\b[^>]*>", _OPEN, text).replace("</transChange>", _CLOSE)
    text = _ENCLITIC.sub(_join_enclitic, _TAG.sub("", text))
    text = _GLUED.sub(" ", text).replace(_OPEN, "").replace(_CLOSE, "")
    text = _USFM_MARKER.sub("", html.unescape(text).replace("¶", " "))
    return " ".join(text.split())


def _bible_verses(package: str, module: str, workdir: Path) -> dict[VerseKey, str]:
    """Every verse of a SWORD Bible module from a Debian package, cleaned, by (book, chapter, verse)."""
    library = debian_package_root(package, workdir) / "usr" / "share" / "sword"
    modules = SwordModules(str(library))
    if module not in modules.parse_modules():
        raise RuntimeError(f"the Debian package {package} has no SWORD module {module} under {library}")
    bible = modules.get_bible_from_module(module)
    # pysword decompresses the whole book block again for every verse it reads; keeping the
    # last blocks makes extracting a Bible take a second instead of minutes.
    bible._decompressed_text = lru_cache(maxsize=2)(bible._decompressed_text)
    verses = {}
    for books in bible.get_structure().get_books().values():
        for book in books:
            for chapter, n_verses in enumerate(book.chapter_lengths, 1):
                texts = list(bible.get_iter(books=[book.name], chapters=[chapter], clean=False))
                if len(texts) != n_verses:
                    raise RuntimeError(f"{module} {book.osis_name} {chapter}: read {len(texts)} verses, expected {n_verses}")
                for verse, text in enumerate(texts, 1):
                    verses[(book.osis_name, chapter, verse)] = _clean_verse(text)
    return verses


def _build_bible() -> dict[str, list[Pair]]:
    """KJV/RV1909 verse pairs; seeded whole chapters (~2% of the verses each) for validation and test."""
    with tempfile.TemporaryDirectory() as workdir:
        english = _bible_verses(*_KJV, Path(workdir))
        spanish = _bible_verses(*_RV1909, Path(workdir))
    pairs = {key: (text, spanish.get(key, "")) for key, text in english.items()}
    pairs = {key: pair for key, pair in pairs.items() if pair[0] and pair[1]}
    return _split_by_chapter(pairs, fraction=0.02)


def _split_by_chapter(pairs: dict[VerseKey, Pair], fraction: float) -> dict[str, list[Pair]]:
    """Hold out seeded whole chapters until validation and test each reach ``fraction`` of the pairs.

    A source verse that also occurs in a held-out chapter is left out of the earlier split of
    train < validation < test, so no source sentence is in two splits.
    """
    sizes = Counter(key[:2] for key in pairs)  # verses per chapter, the chapters in canonical order
    order = list(sizes)
    random.Random(SEED).shuffle(order)
    target = fraction * len(pairs)
    assignment, counts = {}, {"validation": 0, "test": 0}
    for chapter in order:
        split = next((s for s in ("validation", "test") if counts[s] < target), "train")
        assignment[chapter] = split
        if split != "train":
            counts[split] += sizes[chapter]
    rank = {"train": 0, "validation": 1, "test": 2}
    home: dict[str, str] = {}  # source sentence -> the latest split of train < validation < test holding it
    for key, (source, _) in pairs.items():
        split = assignment[key[:2]]
        if rank[split] > rank[home.get(source, "train")]:
            home[source] = split
    splits: dict[str, list[Pair]] = {split: [] for split in BUILTIN_SPLITS}
    for key, pair in pairs.items():
        split = assignment[key[:2]]
        if home.get(pair[0], "train") == split:
            splits[split].append(pair)
    return splits


BUILTIN_SETS: dict[str, BuiltinSet] = {
    name: BuiltinSet(summary, _prepared(build), _read_prepared(name), VERSION)
    for name, summary, build in (
        ("default", "English (King James) -> Spanish (Reina-Valera 1909) Bible verses, ~31,000 pairs, "
                    "whole chapters held out", _build_bible),
        ("numbers", "numbers up to 999,999 written in English -> French (num2words), 12,000 pairs", _build_numbers),
    )
}
