"""The built-in sentiment set (``--data builtin``), the only sentiment code that fetches.

``default`` is the movie-review snippets of Hutto & Gilbert (ICWSM 2014), each rated by 20
people, shipped in the source distribution of ``vaderSentiment`` 3.3.2: mean rating above +0.5
is positive, below -0.5 negative, the rest (and repeated sentences) dropped. Preparing writes a
fixed, seeded, stratified 80/10/10 split as ``train.csv``, ``validation.csv`` and ``test.csv``
(columns ``text,label``, label names) that reading loads back through the csv adapter.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import random
import tarfile
import tempfile
from pathlib import Path

from tasks.engine.data import pip_download
from tasks.engine.sets import BUILTIN_SPLITS, BuiltinSet
from tasks.sentiment.formats import CLASSES, SentimentDataset, read_table

VADER_REQUIREMENT = "vaderSentiment==3.3.2"
RESOURCES_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
GROUND_TRUTH = "movieReviewSnippets_GroundTruth.txt"
POSITIVE_ABOVE = 0.5      # mean rating on the -4..+4 scale
NEGATIVE_BELOW = -0.5
HELD_OUT_FRACTION = 0.1   # of each class, for validation and again for test
SPLIT_SEED = 0


def _build_default(target: Path) -> str:
    """Fetch the ``vaderSentiment`` sdist with ``pip download`` and write the three csv splits."""
    with tempfile.TemporaryDirectory(prefix="zoo-sentiment-") as work:
        raw, source = _download_ground_truth(Path(work))
    splits = _stratified_split(_parse_ground_truth(raw, source))
    for split, rows in splits.items():
        _write_csv(target / f"{split}.csv", rows)
    return " / ".join(f"{len(rows)} {split}" for split, rows in splits.items()) + " sentences"


def _read_default(folder: Path, split: str) -> SentimentDataset:
    """One split of the prepared folder, through the csv adapter with the fixed class order."""
    path = folder / f"{split}.csv"
    dataset = read_table(path, {"classes": ",".join(CLASSES)})
    dataset.source = f"builtin:default {split} ({path})"
    return dataset


def _download_ground_truth(workdir: Path) -> tuple[bytes, str]:
    """The ground-truth file's bytes from the vaderSentiment sdist, and a name for messages."""
    extra = ["--no-binary", ":all:"]
    if importlib.util.find_spec("setuptools") is not None:
        extra.append("--no-build-isolation")   # pip prepares the sdist's metadata; this skips a ~15 s build env
    sdist = pip_download(VADER_REQUIREMENT, workdir, *extra)
    with tarfile.open(sdist) as outer:
        resources = _member(outer, RESOURCES_ARCHIVE, sdist.name)
        with tarfile.open(fileobj=io.BytesIO(resources)) as inner:
            return _member(inner, GROUND_TRUTH, RESOURCES_ARCHIVE), f"{sdist.name}:{RESOURCES_ARCHIVE}:{GROUND_TRUTH}"


def _member(archive: tarfile.TarFile, suffix: str, archive_name: str) -> bytes:
    """The bytes of the one file whose path ends with ``suffix``."""
    for info in archive:
        if info.isfile() and info.name.endswith(suffix):
            return archive.extractfile(info).read()
    raise RuntimeError(f"{archive_name} holds no file ending with {suffix!r}; was the package changed?")


def _parse_ground_truth(raw: bytes, source: str) -> list[dict[str, str]]:
    """Rows ``id<TAB>mean rating<TAB>sentence`` -> ``{"text", "label"}`` for clearly rated, distinct sentences.

    The file is UTF-8 (CRLF line ends) despite older notes calling it latin-1.
    """
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{source}:{number}: expected id<TAB>rating<TAB>sentence, got {len(fields)} fields")
        try:
            rating = float(fields[1])
        except ValueError:
            raise ValueError(f"{source}:{number}: rating {fields[1]!r} is not a number") from None
        sentence = fields[2].strip()
        label = "positive" if rating > POSITIVE_ABOVE else "negative" if rating < NEGATIVE_BELOW else None
        if label is None or not sentence or sentence in seen:
            continue
        seen.add(sentence)
        rows.append({"text": sentence, "label": label})
    return rows


def _stratified_split(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """A seeded split keeping each class's share: HELD_OUT_FRACTION each to test and validation."""
    rng = random.Random(SPLIT_SEED)
    splits: dict[str, list[dict[str, str]]] = {split: [] for split in BUILTIN_SPLITS}
    for label in sorted({row["label"] for row in rows}):
        group = [row for row in rows if row["label"] == label]
        rng.shuffle(group)
        n_held = round(len(group) * HELD_OUT_FRACTION)
        splits["test"] += group[:n_held]
        splits["validation"] += group[n_held:2 * n_held]
        splits["train"] += group[2 * n_held:]
    for part in splits.values():
        rng.shuffle(part)
    return splits


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([row["text"], row["label"]] for row in rows)


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "default": BuiltinSet("~10,000 movie-review sentences rated by 20 people each (vaderSentiment 3.3.2 sdist), "
                          "negative/positive, stratified 80/10/10", _build_default, _read_default, version="1"),
}
