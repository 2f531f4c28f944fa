"""Translation data: sentence-pair adapters and the built-in parallel corpora.

Formats (``--data FORMAT:PATH``), each giving samples ``{"source": str, "target": str}``:

- ``tsv:PATH``: one ``source<TAB>target`` pair per line.
- ``jsonl:PATH?src=en&tgt=es``: one JSON object per line; the field names default to
  ``src`` and ``tgt``.
- ``pairs:SRC_PATH,TGT_PATH``: two line-aligned plain-text files (``train.en,train.es``).

Every line must hold a pair with text on both sides; anything else is refused with the
file and line (text corpora have no "damaged item" worth skipping silently).

Built-in sets (``zoo data prepare translation``), cached as ``train.tsv``,
``validation.tsv`` and ``test.tsv`` and read back through the TSV adapter:

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
import time
from functools import lru_cache
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Iterator

from num2words import num2words
from pysword.modules import SwordModules
from torch.utils.data import Dataset

from tasks.engine.data import (
    build_atomically,
    builtin_dir,
    data_root,
    debian_package_root,
    hash_split,
    is_prepared,
    parse_spec,
    read_jsonl,
    read_utf8,
    split_lines,
)
from zoo.errors import ZooError

TASK = "translation"
VERSION = "2"  # 2: a verse text repeated in another chapter is kept in its held-out split only
BUILTIN_SETS: dict[str, str] = {
    "default": "English (King James) -> Spanish (Reina-Valera 1909) Bible verses, ~31,000 pairs, whole chapters held out",
    "numbers": "numbers up to 999,999 written in English -> French (num2words), 12,000 pairs",
}
QUICK_SET = "numbers"
SPLITS = ("train", "validation", "test")
SEED = 0

Pair = tuple[str, str]
VerseKey = tuple[str, int, int]  # (OSIS book name, chapter, verse)


class TranslationDataset(Dataset):
    """Sentence pairs; item ``i`` is ``{"source": str, "target": str}``.

    ``pairs`` holds the (source, target) tuples (for tokenizer training or length
    bucketing), ``source`` says where they came from, ``skipped`` is always 0 (bad
    lines are errors, not skips).
    """

    def __init__(self, pairs: list[Pair], source: str) -> None:
        self.pairs = pairs
        self.source = source
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, str]:
        source, target = self.pairs[index]
        return {"source": source, "target": target}


# ---- reading ------------------------------------------------------------------------------


def read(spec: str, split: str) -> TranslationDataset:
    """The ``split`` of a data SPEC: ``builtin``, ``builtin:NAME``, ``tsv:``, ``jsonl:`` or ``pairs:``.

    Built-in sets have fixed ``train``/``validation``/``test`` splits; a user source is
    read whole and then split 90/5/5 by a seeded hash of each source sentence
    (:func:`~tasks.engine.data.hash_split`; ``all`` keeps everything).
    """
    parsed = parse_spec(spec)
    if parsed.is_builtin:
        return _read_builtin(parsed.path or "default", split)
    reader = _READERS.get(parsed.format)
    if reader is None:
        raise ValueError(
            f"--data {spec!r}: unknown translation format {parsed.format!r}; "
            f"expected builtin, {', '.join(_READERS)}"
        )
    allowed = _OPTIONS[parsed.format]
    unknown = sorted(set(parsed.options) - set(allowed))
    if unknown:
        expected = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"--data {spec!r}: unknown option(s) {', '.join(unknown)} for {parsed.format}; expected {expected}")
    pairs = reader(parsed.path, parsed.options)
    if not pairs:
        raise ValueError(f"--data {spec!r}: no sentence pairs in {parsed.path}")
    return TranslationDataset(hash_split(pairs, split, key=_source_key, source=f"--data {spec}", seed=SEED),
                              f"{spec} [{split}]")


def _source_key(pair: Pair) -> str:
    """A pair's split key: its source sentence, so one sentence is never in two splits."""
    return pair[0]


def _read_builtin(name: str, split: str) -> TranslationDataset:
    if name not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in translation set {name!r}; choose one of: {', '.join(BUILTIN_SETS)}")
    if split not in SPLITS:
        raise ValueError(f"built-in set 'builtin:{name}' has the splits {', '.join(SPLITS)}, not {split!r}")
    path = builtin_dir(TASK, name, VERSION) / f"{split}.tsv"
    return TranslationDataset(_read_tsv(str(path), {}), f"builtin:{name} [{split}] ({path})")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of a UTF-8 file, without line endings or a leading BOM.

    Lines end at ``\\n``, ``\\r\\n`` or a bare ``\\r``, never at an exotic Unicode line separator, so
    two aligned files agree on numbering whatever system wrote them. Bytes that are not UTF-8
    or a NUL character raise naming the file and line.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    yield from enumerate(split_lines(read_utf8(path)), 1)


def _read_tsv(path: str, options: dict[str, str]) -> list[Pair]:
    """``source<TAB>target`` lines; blank lines are skipped, one without exactly one tab or with an empty side is refused."""
    file = Path(path).expanduser()
    pairs = []
    for number, line in _lines(file):
        if not line.strip():
            continue  # a blank or whitespace-only line holds no pair
        fields = line.split("\t")
        if len(fields) != 2:
            raise ZooError(f"{file}:{number}: expected 'source<TAB>target' (exactly one tab), found {len(fields) - 1} tabs")
        source, target = fields[0].strip(), fields[1].strip()
        if not source or not target:
            raise ZooError(f"{file}:{number}: empty {'source' if not source else 'target'} text")
        pairs.append((source, target))
    return _nonempty(pairs, file)


def _nonempty(pairs: list[Pair], file: Path) -> list[Pair]:
    """``pairs``; none at all (an empty or blank file) raises naming the file."""
    if not pairs:
        raise ZooError(f"{file}: no sentence pairs (the file is empty)")
    return pairs


def _read_jsonl(path: str, options: dict[str, str]) -> list[Pair]:
    """One JSON object a line; ``options`` may rename the ``src`` and ``tgt`` fields."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    keys = (options.get("src", "src"), options.get("tgt", "tgt"))
    pairs = []
    for number, row in read_jsonl(file):
        texts = []
        for key in keys:
            if key not in row:
                raise ZooError(
                    f"{file}:{number}: no field {key!r} (the line has: {', '.join(row) or 'no fields'}); "
                    f"name the fields with jsonl:{path}?src=FIELD&tgt=FIELD"
                )
            value = row[key]
            if not isinstance(value, str):
                raise ZooError(f"{file}:{number}: field {key!r} must be a string, not {type(value).__name__}")
            if not value.strip():
                raise ZooError(f"{file}:{number}: field {key!r} is empty")
            texts.append(value.strip())
        pairs.append((texts[0], texts[1]))
    return _nonempty(pairs, file)


def _read_pairs(paths: str, options: dict[str, str]) -> list[Pair]:
    """Two line-aligned files ``SRC,TGT``; different lengths or an empty line are refused."""
    parts = paths.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ZooError(f"pairs:{paths}: expected two comma-separated files, pairs:SOURCE_FILE,TARGET_FILE")
    files = [Path(p.strip()).expanduser() for p in parts]
    src_lines, tgt_lines = _lines(files[0]), _lines(files[1])
    pairs = []
    for src_item, tgt_item in zip_longest(src_lines, tgt_lines):
        if src_item is None or tgt_item is None:
            short, long, rest = (files[0], files[1], tgt_lines) if src_item is None else (files[1], files[0], src_lines)
            number = (tgt_item or src_item)[0]
            total = number + sum(1 for _ in rest)
            raise ZooError(
                f"{short} ends after line {number - 1} but {long} goes on to line {total}: "
                f"line {number} of {long} has no counterpart; the two files of pairs: must have the same number of lines"
            )
        number = src_item[0]
        for file, text in zip(files, (src_item[1], tgt_item[1])):
            if not text.strip():
                raise ZooError(f"{file}:{number}: empty line (every line of {files[0]} pairs with the same line of {files[1]})")
        pairs.append((src_item[1].strip(), tgt_item[1].strip()))
    return _nonempty(pairs, files[0])


_READERS: dict[str, Callable[[str, dict[str, str]], list[Pair]]] = {
    "tsv": _read_tsv,
    "jsonl": _read_jsonl,
    "pairs": _read_pairs,
}
_OPTIONS: dict[str, tuple[str, ...]] = {"tsv": (), "jsonl": ("src", "tgt"), "pairs": ()}


# ---- preparing the built-in sets -----------------------------------------------------------


def prepare(names: list[str] | None = None, force: bool = False) -> None:
    """Build the named built-in sets (all when None) into ``data_root()/translation/<name>``.

    A set already prepared with this :data:`VERSION` is kept unless ``force``.
    """
    names = list(BUILTIN_SETS) if names is None else names
    unknown = [name for name in names if name not in BUILTIN_SETS]
    if unknown:
        raise ValueError(f"unknown built-in translation set(s) {', '.join(unknown)}; choose from {', '.join(BUILTIN_SETS)}")
    for name in names:
        folder = data_root() / TASK / name
        if not force and is_prepared(TASK, name, VERSION):
            print(f"translation:{name}: already prepared in {folder}")
            continue
        start = time.perf_counter()
        with build_atomically(TASK, name, VERSION) as tmp:
            splits = _BUILDERS[name]()
            for split, pairs in splits.items():
                _write_tsv(tmp / f"{split}.tsv", pairs)
        sizes = " / ".join(f"{len(pairs):,} {split}" for split, pairs in splits.items())
        print(f"translation:{name}: {sizes} pairs in {time.perf_counter() - start:.1f} s -> {folder}")


def _write_tsv(path: Path, pairs: list[Pair]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for source, target in pairs:
            if any(c in source + target for c in "\t\n\r"):
                raise ValueError(f"cannot write {source!r} / {target!r} to {path}: a tab or line break inside")
            f.write(f"{source}\t{target}\n")


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
    chapters = list(dict.fromkeys(key[:2] for key in pairs))  # canonical order
    sizes = {chapter: 0 for chapter in chapters}
    for key in pairs:
        sizes[key[:2]] += 1
    order = chapters[:]
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
    splits: dict[str, list[Pair]] = {split: [] for split in SPLITS}
    for key, pair in pairs.items():
        split = assignment[key[:2]]
        if home.get(pair[0], "train") == split:
            splits[split].append(pair)
    return splits


_BUILDERS: dict[str, Callable[[], dict[str, list[Pair]]]] = {"default": _build_bible, "numbers": _build_numbers}
