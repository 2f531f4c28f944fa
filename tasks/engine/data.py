"""Data helpers shared by every task: the SPEC parser, the built-in cache, package fetching, splits.

A data SPEC is ``builtin``, ``builtin:NAME`` or ``FORMAT:PATH[?key=value&...]``
(``csv:reviews.csv?text=review&label=stars``, ``pairs:train.en,train.es``).
Built-in sets live under ``$ZOO_DATA`` (default ``~/.cache/zoo/data``), one folder per
task and set, each written atomically by :func:`build_atomically` and stamped with a
version so a changed preparation rebuilds instead of reading stale files.

Splits of user sources are disjoint by construction: a single file is cut by a seeded hash of
each sample's key (:func:`hash_split`, 90/5/5 train/validation/test), a source with its own
split lists keeps them and never makes a test split up from training data (:func:`named_split`).
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import parse_qsl

from zoo.errors import ZooError
from zoo.storage import atomic_folder, data_root

T = TypeVar("T")

STAMP = ".zoo-version"
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value: ``format`` ("builtin", "csv", ...), ``path`` and ``options``."""

    format: str
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_builtin(self) -> bool:
        return self.format == "builtin"

    def __str__(self) -> str:
        """The SPEC as written: ``FORMAT:PATH?k=v&...`` (for messages and ``source``)."""
        query = "&".join(f"{key}={value}" for key, value in self.options.items())
        return f"{self.format}:{self.path}" + (f"?{query}" if query else "")


def parse_spec(spec: str) -> DataSpec:
    """Parse ``builtin``, ``builtin:NAME`` or ``FORMAT:PATH?k=v&k2=v2`` into a :class:`DataSpec`.

    >>> parse_spec("csv:r.csv?text=review&label=stars")
    DataSpec(format='csv', path='r.csv', options={'text': 'review', 'label': 'stars'})
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("empty --data SPEC; use 'builtin', 'builtin:NAME' or 'FORMAT:PATH'")
    if ":" not in spec:
        if spec == "builtin":
            return DataSpec("builtin", "")
        raise ValueError(f"--data {spec!r}: expected 'builtin', 'builtin:NAME' or 'FORMAT:PATH[?key=value]'")
    fmt, rest = spec.split(":", 1)
    path, _, query = rest.partition("?")
    return DataSpec(fmt.lower(), path, dict(parse_qsl(query, keep_blank_values=True)))


def builtin_dir(task: str, name: str, version: str) -> Path:
    """The folder of a prepared built-in set; raises naming the command that prepares it."""
    folder = data_root() / task / name
    if not is_prepared(task, name, version):
        raise FileNotFoundError(
            f"built-in data set '{task}:{name}' (version {version}) is not prepared in {folder}; "
            f"run `zoo data prepare {task}` (or `make data`) first"
        )
    return folder


def is_prepared(task: str, name: str, version: str) -> bool:
    """True when the built-in set exists with this version stamp."""
    stamp = data_root() / task / name / STAMP
    return stamp.is_file() and stamp.read_text().strip() == version


@contextmanager
def build_atomically(task: str, name: str, version: str) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it is stamped and renamed into place.

    A failure or an interruption leaves any previous version untouched and no half-built
    folder behind the final name (:func:`zoo.storage.atomic_folder`).
    """
    with atomic_folder(data_root() / task / name) as tmp:
        yield tmp
        (tmp / STAMP).write_text(version + "\n")


def debian_package_root(package: str, workdir: Path) -> Path:
    """Return a folder holding ``package``'s files: ``/`` when it is installed, else an unpacked .deb.

    Uses ``apt-get download`` + ``dpkg-deb -x`` (no root, no dependencies pulled in),
    which is what packages like ``r-cran-janeaustenr`` need (installing it pulls in R).
    """
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    if installed.returncode == 0 and "install ok installed" in installed.stdout:
        return Path("/")
    workdir.mkdir(parents=True, exist_ok=True)
    debs = list(workdir.glob(f"{package}_*.deb"))
    if not debs:
        result = subprocess.run(["apt-get", "download", package], cwd=workdir, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"could not fetch the Debian package {package!r} with `apt-get download {package}`:\n"
                f"{result.stderr.strip()}\n(run `apt-get update` first, as root, if the package lists are empty)"
            )
        debs = list(workdir.glob(f"{package}_*.deb"))
    root = workdir / f"{package}-root"
    if not root.exists():
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
    return root


def require_program(name: str, package: str) -> str:
    """Path of an executable, or an error naming the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` is not installed; install the Debian package {package!r} (`make data` does it as root)")
    return path


def pip_download(requirement: str, workdir: Path, *extra: str) -> Path:
    """``pip download --no-deps`` one requirement into ``workdir`` and return the downloaded file."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(workdir), *extra, requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()}")
    files = sorted(p for p in workdir.iterdir() if p.is_file())
    if not files:
        raise RuntimeError(f"pip download of {requirement} produced no file in {workdir}")
    return files[-1]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows as JSON lines (UTF-8)."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_tsv(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = ()) -> None:
    """Write ``header`` (when given) and ``rows`` as tab-separated UTF-8 lines; a field holding a tab or a
    line break raises, naming the row."""
    for row in rows:
        if any(c in field for field in row for c in "\t\n\r"):
            raise ValueError(f"cannot write {tuple(row)!r} to {path}: a tab or line break inside")
    lines = [header, *rows] if header else rows
    Path(path).write_text("".join("\t".join(row) + "\n" for row in lines), encoding="utf-8")


def read_utf8(path: str | Path) -> str:
    """A whole UTF-8 text file (a leading BOM dropped). A missing file, bytes that are not UTF-8 and NUL
    characters (the mark of a UTF-16 or binary file read as UTF-8) raise naming the file, line and byte."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileNotFoundError(f"{path}: is a folder, not a file") from None
    except UnicodeDecodeError as err:
        line = err.object.count(b"\n", 0, err.start) + 1
        raise ZooError(f"{path}: not UTF-8 (byte 0x{err.object[err.start]:02x} at line {line}); "
                       "re-save it as UTF-8") from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise ZooError(f"{path}: NUL character (byte 0x00 at line {line}); is it UTF-16 or binary? "
                       "re-save it as UTF-8 text")
    return text


def split_lines(text: str) -> list[str]:
    """Lines of a text, ending at ``\\n``, ``\\r\\n`` or a bare ``\\r`` (old Mac files); no Unicode separators.

    A final line end does not start another (empty) line.
    """
    lines = _LINE_END.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


THREE_WAY: dict[str, float] = {"train": 0.90, "validation": 0.05, "test": 0.05}
TWO_WAY: dict[str, float] = {"train": 0.95, "validation": 0.05}
SPLIT_NAMES = ("train", "validation", "test", "all")


def file_key(path: str | Path, root: str | Path) -> str:
    """A file's split key: its path relative to the source's folder, so moving the folder moves no sample."""
    return Path(os.path.relpath(path, root)).as_posix()


def split_score(key: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by ``key`` and ``seed`` alone (BLAKE2b of both), uniform over keys."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, salt=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_assignment(keys: Sequence[str], fractions: Mapping[str, float] = THREE_WAY, seed: int = 0) -> dict[str, str]:
    """The split of every distinct key: bands of :func:`split_score` in the order of ``fractions``.

    A key's split depends on the key alone, so reordering a source or appending to it never
    moves a sample, and identical samples (same key) always share a split. One exception keeps
    small sources usable: a held-out split that no key falls into takes the train key scored
    highest (nearest its band), while train keeps at least one key. Appending can only hand
    such a key back to train (when a new key falls into the band), never move a trained-on
    key out of train.
    """
    names = list(fractions)
    if names[0] != "train" or abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"fractions must start with train and sum to 1, got {dict(fractions)}")
    bounds = list(itertools.accumulate(fractions.values()))
    scores = {key: split_score(key, seed) for key in dict.fromkeys(keys)}
    placed = {key: names[min(bisect.bisect_right(bounds, score), len(names) - 1)] for key, score in scores.items()}
    for name in names[1:]:
        train = [key for key in scores if placed[key] == "train"]
        if name not in placed.values() and len(train) > 1:
            placed[max(train, key=scores.__getitem__)] = name
    return placed


def hash_split(samples: Sequence[T], split: str, key: Callable[[T], str], source: str,
               fractions: Mapping[str, float] = THREE_WAY, seed: int = 0) -> list[T]:
    """The ``split`` of one user source without split lists of its own, in the source's order.

    Each sample goes by a seeded hash of ``key(sample)`` (its text, its file's path inside the
    source...) into disjoint train/validation/test parts (``fractions``, 90/5/5 by default; see
    :func:`split_assignment`); ``all`` keeps everything. A split that ``fractions`` lacks, or one
    left empty, raises :class:`ZooError`.
    """
    if split == "all":
        return list(samples)
    if split not in fractions:
        if split in SPLIT_NAMES:
            others = [name for name in fractions if name not in ("train", split)] + ["all"]
            raise ZooError(f"{source} has no {split} split; pass --split {' or '.join(others)}, "
                           f"or a {split} listing/file")
        raise ZooError(f"unknown split {split!r}; expected {', '.join(SPLIT_NAMES)}")
    keys = [key(sample) for sample in samples]
    placed = split_assignment(keys, fractions, seed)
    chosen = [sample for sample, k in zip(samples, keys) if placed[k] == split]
    if not chosen:
        raise ZooError(f"{source}: its {split} split is empty ({len(set(keys))} distinct samples split "
                       f"{'/'.join(f'{round(100 * f)}' for f in fractions.values())}); add samples or pass --split all")
    return chosen


def named_split(split: str, entries: Sequence[T], named: Mapping[str, Sequence[T]], key: Callable[[T], str],
                source: str, seed: int = 0) -> list[T]:
    """The ``split`` of a source that names some of its splits (VOC listings, YOLO or Common Voice folders).

    ``entries`` is everything the source holds (``all``); ``named`` maps "train" | "validation"
    | "test" to the source's own lists, which must not share a sample (:class:`ZooError` names
    one shared). Train is the train list or, without one, the entries in no list; validation is
    the validation list or, without one, a hashed 5% carved out of train (:func:`hash_split`).
    A missing test list is an error: the test split is never made up from training data.
    """
    if split == "all":
        return list(entries)
    if split not in SPLIT_NAMES:
        raise ZooError(f"unknown split {split!r}; expected {', '.join(SPLIT_NAMES)}")
    seen: dict[str, str] = {}
    for name, samples in named.items():
        for k in map(key, samples):
            if seen.setdefault(k, name) != name:
                raise ZooError(f"{source}: {k!r} is in both its {seen[k]} and {name} lists; "
                               "a sample may be in one split only, remove it from one list")
    if split == "test":
        if "test" not in named:
            raise ZooError(f"{source} has no test split; pass --split validation or a test listing/file")
        return list(named["test"])
    if split == "validation" and "validation" in named:
        return list(named["validation"])
    pool = named["train"] if "train" in named else [e for e in entries if key(e) not in seen]
    if not pool:
        raise ZooError(f"{source} has no train split: no train list and no sample outside its lists")
    return list(pool) if "validation" in named else hash_split(pool, split, key, source, TWO_WAY, seed)
