"""ASR's built-in sets, synthesized offline by Debian's espeak-ng and flite (``zoo data prepare asr``).

Each is written as 16 kHz FLAC with ``train.jsonl``/``validation.jsonl``/``test.jsonl``
manifests and read back through the manifest adapter. Validation and test are spoken by
voices never heard in training: flite ``rms`` and ``slt``, and espeak-ng variants and
accents kept out of the training pool.

- ``digits`` (quick): connected digit strings of 1 to 7 digits, said as words with 0 as
  "oh" or "zero" (like TIDIGITS).
- ``default``: short sentences (3 to 12 words) from Jane Austen's six novels (public
  domain; Debian ``r-cran-janeaustenr``, read by :func:`tasks.engine.sources.austen_novels`),
  no sentence in two splits.
"""
from __future__ import annotations

import random
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from tasks.asr.audio import SAMPLE_RATE, load_audio, save_flac
from tasks.asr.formats import SEED, SpeechDataset, manifest_entries, normalize_text
from tasks.engine.data import require_program, write_jsonl
from tasks.engine.sets import BUILTIN_SPLITS, BuiltinSet
from tasks.engine.sources import AUSTEN_PACKAGE, austen_novels
from zoo.progress import progress_bar

VERSION = "2"

# (train, validation, test) utterance counts of each built-in set
_SIZES = {"digits": (3000, 300, 300), "default": (4000, 300, 300)}
# Voices per split; no voice (engine + accent + variant) is shared between splits.
_ESPEAK_ACCENTS = {
    "train": ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd"),
    "validation": ("en-gb-scotland", "en-us"),
    "test": ("en-us-nyc", "en-029", "en-gb"),
}
_ESPEAK_VARIANTS = {
    "train": ("", "m1", "m2", "m3", "m5", "m6", "f1", "f3", "f5"),
    "validation": ("m4", "f2"),
    "test": ("m7", "m8", "f4"),
}
_FLITE_VOICES = {"train": ("kal", "kal16", "awb"), "validation": ("rms",), "test": ("slt",)}
_FLITE_F0 = {"kal": 100, "kal16": 100, "awb": 120, "rms": 100, "slt": 170}   # mean pitch (Hz) of each voice
# Range of the factor on that pitch per split: the (male) training voices are also pitched up to where
# female voices speak, so that a held-out voice's pitch is never new, only its timbre.
_FLITE_F0_FACTOR = {"train": (0.8, 1.9), "validation": (0.85, 1.2), "test": (0.85, 1.2)}
_FLITE_SHARE = 1 / 3  # fraction of utterances spoken by flite, the rest by espeak-ng
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_ABBREVIATIONS = ("Mr", "Mrs", "Dr", "St", "Messrs", "Esq", "Col", "Capt")
_ABBREVIATION = re.compile(rf"\b({'|'.join(_ABBREVIATIONS)})\.")
_SPEAKABLE = re.compile(r"[A-Z][A-Za-z' ,;:!?.\-]*[.!?]")  # no digits, quotes or brackets


@dataclass(frozen=True)
class _Utterance:
    """One utterance to synthesize: what is said, its transcript, and the command's voice settings."""

    file: str         # relative to the set's folder, e.g. "train/00042.flac"
    spoken: str       # the text handed to the synthesizer
    text: str         # the normalised transcript
    engine: str       # "espeak-ng" or "flite"
    voice: str        # "en-us+m3" or "slt"
    rate: float       # espeak-ng words per minute, or flite duration stretch
    pitch: float      # espeak-ng pitch 0-99, or flite mean F0 in Hz


def _read_prepared(folder: Path, split: str) -> SpeechDataset:
    """One split of a prepared set, through its manifest."""
    return SpeechDataset(manifest_entries(folder / f"{split}.jsonl"), f"builtin:{folder.name} ({split})")


def _builder(name: str) -> Callable[[Path], str]:
    """``build(folder)`` of the set ``name``: its texts planned over the voices and synthesized."""
    def build(out: Path) -> str:
        require_program("espeak-ng", "espeak-ng")
        require_program("flite", "flite")
        count = sum(_SIZES[name])
        texts = _digit_strings(count, SEED) if name == "digits" else _austen_sentences(count)
        hours = _synthesize_set(out, _plan(texts, _SIZES[name], SEED)) / 3600
        return f"{' / '.join(map(str, _SIZES[name]))} utterances ({hours:.1f} h of audio)"

    return build


def _digit_strings(count: int, seed: int) -> list[str]:
    """``count`` strings of 1 to 7 digit words, each 0 said as "oh" or "zero" at random."""
    rng = random.Random(seed)
    strings = []
    for _ in range(count):
        digits = [rng.randrange(10) for _ in range(rng.randint(1, 7))]
        strings.append(" ".join(rng.choice(("oh", "zero")) if d == 0 else _DIGIT_WORDS[d] for d in digits))
    return strings


def _austen_sentences(count: int) -> list[str]:
    """``count`` distinct, seeded-shuffled sentences of Jane Austen's novels that a synthesizer reads as written."""
    novels = [lines for _, lines in sorted(austen_novels().items())]
    sentences = speakable_sentences("\n".join(lines) for lines in novels)
    if len(sentences) < count:
        raise ValueError(f"{AUSTEN_PACKAGE}: only {len(sentences)} usable sentences, {count} needed")
    random.Random(SEED).shuffle(sentences)
    return sentences[:count]


def speakable_sentences(texts: Iterable[str], min_words: int = 3, max_words: int = 12) -> list[str]:
    """Distinct sentences of prose that a synthesizer says exactly as their normalised transcript.

    Paragraphs (blank-line separated) are cut after ``.``, ``!`` or ``?``; a sentence is kept
    when it starts with a capital, ends a sentence, has ``min_words`` to ``max_words`` words
    and holds only letters, apostrophes and punctuation: no digits, abbreviations (``Mr.``)
    or all-capital words, which synthesizers expand into words the transcript lacks.
    """
    seen: dict[str, str] = {}  # normalised text -> sentence, first occurrence wins
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            flat = _ABBREVIATION.sub(r"\1", " ".join(paragraph.split()).replace("_", ""))
            for sentence in re.split(r"(?<=[.!?])\s+", flat):
                sentence = sentence.strip(" \"'\u201c\u201d\u2018\u2019")
                if min_words <= len(sentence.split()) <= max_words and _speakable(sentence):
                    seen.setdefault(normalize_text(sentence), sentence)
    return list(seen.values())


def _speakable(sentence: str) -> bool:
    """True when the sentence holds nothing a synthesizer would say differently from its transcript."""
    if not _SPEAKABLE.fullmatch(sentence) or "--" in sentence:
        return False
    words = [word.strip(",;:!?.'-") for word in sentence.split()]
    return not any(word in _ABBREVIATIONS or (len(word) > 1 and word.isupper()) for word in words)


def _plan(texts: list[str], sizes: tuple[int, int, int], seed: int) -> list[_Utterance]:
    """Assign each text a split (in order: train, validation, test), a file, a voice of that split and a prosody."""
    rng = random.Random(seed)
    plan = []
    bounds = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    for split, lo, hi in zip(BUILTIN_SPLITS, bounds, bounds[1:]):
        espeak_voices = [f"{a}+{v}" if v else a for a in _ESPEAK_ACCENTS[split] for v in _ESPEAK_VARIANTS[split]]
        for number, spoken in enumerate(texts[lo:hi]):
            if rng.random() < _FLITE_SHARE:
                voice = rng.choice(_FLITE_VOICES[split])
                engine, rate, pitch = "flite", rng.uniform(0.85, 1.25), _FLITE_F0[voice] * rng.uniform(*_FLITE_F0_FACTOR[split])
            else:
                voice = rng.choice(espeak_voices)
                engine, rate, pitch = "espeak-ng", rng.randint(130, 200), rng.randint(25, 75)
            plan.append(_Utterance(f"{split}/{number:05d}.flac", spoken, normalize_text(spoken), engine, voice, rate, pitch))
    return plan


def _synthesize_set(out: Path, plan: list[_Utterance]) -> float:
    """Speak every utterance (2 synthesizer processes at a time) into ``out`` as 16 kHz FLAC plus
    one JSONL manifest per split; returns the total duration in seconds."""
    for split in BUILTIN_SPLITS:
        (out / split).mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the two workers are the parallelism; intra-op threads on short clips only spin
    with tempfile.TemporaryDirectory() as scratch:
        pool = ThreadPoolExecutor(max_workers=2)  # each thread waits on its own synthesizer process
        try:
            rows = list(progress_bar(pool.map(lambda u: _synthesize(u, out, Path(scratch)), plan), total=len(plan),
                                     desc="speaking", unit="clip"))
        finally:
            pool.shutdown(cancel_futures=True)  # a failure stops the run instead of finishing the queue
            torch.set_num_threads(threads)
    for split in BUILTIN_SPLITS:
        write_jsonl(out / f"{split}.jsonl", [row for row in rows if row["audio_filepath"].startswith(f"{split}/")])
    return sum(row["duration"] for row in rows)


def _synthesize(utterance: _Utterance, out: Path, scratch: Path) -> dict:
    """Run one synthesizer into a scratch WAV, then write it as 16 kHz FLAC; returns its manifest row."""
    wav = scratch / (utterance.file.replace("/", "-") + ".wav")
    if utterance.engine == "flite":
        command = ["flite", "-voice", utterance.voice, "--setf", f"duration_stretch={utterance.rate:.3f}",
                   "--setf", f"int_f0_target_mean={utterance.pitch:.1f}", "-o", str(wav), "-t", utterance.spoken]
    else:
        command = ["espeak-ng", "-v", utterance.voice, "-s", str(utterance.rate), "-p", str(utterance.pitch),
                   "-w", str(wav), utterance.spoken]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wav.is_file():
        raise RuntimeError(f"`{' '.join(command)}` failed (exit {result.returncode}): {result.stderr.strip()}")
    wave = load_audio(wav)  # (S,) at 16 kHz
    wav.unlink()
    save_flac(out / utterance.file, wave)
    return {"audio_filepath": utterance.file, "text": utterance.text, "duration": round(len(wave) / SAMPLE_RATE, 3),
            "voice": f"{utterance.engine}:{utterance.voice}"}


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "default": BuiltinSet("short English sentences from Jane Austen spoken by espeak-ng and flite voices "
                          "(4000/300/300)", _builder("default"), _read_prepared, VERSION),
    "digits": BuiltinSet("connected digit strings of 1-7 digits (TIDIGITS-like) spoken by espeak-ng and flite "
                         "voices (3000/300/300)", _builder("digits"), _read_prepared, VERSION),
}
