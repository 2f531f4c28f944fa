"""Speech translation's built-in sets (``zoo data prepare speech_translation``), synthesized offline.

The translation task's own pairs (prepared into its cache first when missing) have their English
side spoken by ASR's synthesis (espeak-ng and flite, :mod:`tasks.asr.builtin`), with ASR's voice
split: validation and test are spoken by voices never heard in training. Each set is written as
16 kHz FLAC plus ``train.jsonl``/``validation.jsonl``/``test.jsonl`` manifests (``audio_filepath``,
``text``: the English said, ``translation``) and read back through the manifest adapter. The splits
are the translation set's, so no pair is in two splits; each is a seeded subset of them:

- ``numbers`` (quick): English numbers -> French (``translation:numbers``), 2500 / 200 / 200.
- ``default``: King James verses -> Reina-Valera 1909 (``translation:default``), only verses of
  4 to 20 English words (a few seconds of speech each), 4000 / 200 / 200 of the ~31,000 pairs, so
  that preparing takes minutes, not hours (the validation chapters hold 219 such verses; 4-14 words
  left 71, too few for 200).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tasks.asr.builtin import VERSION as ASR_VERSION
from tasks.asr.builtin import _plan, _synthesize_set
from tasks.asr.formats import SpeechDataset
from tasks.engine.data import builtin_dir, require_program, write_jsonl
from tasks.engine.records import jsonl_rows
from tasks.engine.sets import BUILTIN_SPLITS, BuiltinSet, prepare_sets
from tasks.speech_translation.formats import TARGET_FIELD, manifest_entries
from tasks.translation.builtin import BUILTIN_SETS as TRANSLATION_SETS
from tasks.translation.formats import SEED, Pair

VERSION = "3"  # 2: the quick numbers set cut to 2500/200/200 (make demo); 3: default verses of 4-20 words


@dataclass(frozen=True)
class Plan:
    """What one built-in set takes from a translation set: its name there, pairs per split, words per source."""

    pairs: str                           # the translation set
    sizes: tuple[int, int, int]          # (train, validation, test) pairs kept
    words: tuple[int, int] = (1, 1000)   # English words per kept source, inclusive


PLANS = {"numbers": Plan("numbers", (2500, 200, 200)), "default": Plan("default", (4000, 200, 200), (4, 20))}


def translation_pairs(plan: Plan) -> dict[str, list[Pair]]:
    """The seeded subset of each split of the translation set ``plan.pairs`` (prepared first if missing)."""
    prepare_sets("translation", TRANSLATION_SETS, [plan.pairs])
    entry = TRANSLATION_SETS[plan.pairs]
    folder = builtin_dir("translation", plan.pairs, entry.version)
    rng = random.Random(SEED)
    chosen = {}
    for split, size in zip(BUILTIN_SPLITS, plan.sizes):
        pairs = [p for p in entry.read(folder, split).pairs if plan.words[0] <= len(p[0].split()) <= plan.words[1]]
        if len(pairs) < size:
            raise ValueError(f"translation:{plan.pairs} ({split}) has {len(pairs)} pairs of {plan.words[0]}-"
                             f"{plan.words[1]} words, {size} needed")
        chosen[split] = rng.sample(pairs, size)
    return chosen


def build_set(out: Path, plan: Plan) -> str:
    """Speak the English side of ``plan``'s pairs into ``out`` and write the manifests; returns a summary."""
    require_program("espeak-ng", "espeak-ng")
    require_program("flite", "flite")
    splits = translation_pairs(plan)
    pairs = [pair for split in BUILTIN_SPLITS for pair in splits[split]]
    hours = _synthesize_set(out, _plan([source for source, _ in pairs], plan.sizes, SEED)) / 3600
    for split in BUILTIN_SPLITS:   # ASR's manifests keep the plan's order: row i of a split says pair i
        path = out / f"{split}.jsonl"
        rows = [row for _, row in jsonl_rows(path, ("audio_filepath",))]
        write_jsonl(path, [{**row, "text": source, TARGET_FIELD: target}
                           for row, (source, target) in zip(rows, splits[split], strict=True)])
    return f"{' / '.join(map(str, plan.sizes))} utterances ({hours:.1f} h of audio)"


def _builder(name: str) -> Callable[[Path], str]:
    return lambda out: build_set(out, PLANS[name])


def _read_prepared(folder: Path, split: str) -> SpeechDataset:
    """One split of a prepared set, through its manifest."""
    return SpeechDataset(manifest_entries(folder / f"{split}.jsonl"), f"builtin:{folder.name} ({split})")


def _version(name: str) -> str:
    """A set's stamp: this module's version and those of ASR's synthesis and of the translation pairs."""
    return f"{VERSION}-asr{ASR_VERSION}-translation{TRANSLATION_SETS[PLANS[name].pairs].version}"


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "numbers": BuiltinSet("spoken English numbers -> French text (2500/200/200)", _builder("numbers"),
                          _read_prepared, _version("numbers")),
    "default": BuiltinSet("spoken King James verses of 4-20 words -> Reina-Valera 1909 Spanish text "
                          "(4000/200/200)", _builder("default"), _read_prepared, _version("default")),
}
