"""Captioning formats: a folder of images + a captions TSV, and COCO-captions JSON, each a :class:`Format`.

SPECs (``--data``):

- ``tsv:CAPTIONS.tsv[?images=DIR]``: one caption per line, ``FILE<TAB>CAPTION``; a file named on
  several lines has several reference captions. ``FILE`` is relative to ``DIR`` (default: the
  TSV's folder) or absolute. An optional first line ``file<TAB>caption`` is a header.
- ``coco:CAPTIONS.json[?images=DIR]``: COCO captions (``images`` with ``id``/``file_name``,
  ``annotations`` with ``image_id``/``caption``). Images are looked up in ``DIR`` when given, else
  beside the JSON, in ``images/`` beside it, or in the folder the file names (``captions_train2017.json``
  -> ``train2017/``) beside it or one level up (COCO's ``annotations/`` layout). ``coco:FOLDER``
  reads ``captions_train*.json`` as the train split, ``captions_val*.json`` as validation and
  ``captions_test*.json`` as test (from ``FOLDER`` or ``FOLDER/annotations``).

A single file has no splits of its own: it is cut 90/5/5 by a seeded hash of each image's path
(:func:`~tasks.engine.data.hash_split`). Every adapter yields the same sample dict: ``image`` uint8
(3, H, W), ``captions`` (every reference, in file order), ``path``. A malformed line or record
(no tab, an empty caption, an unknown image id, a listed image that does not exist) raises
``ZooError`` naming the file and the line or record; an image that exists but cannot be decoded
is skipped with one warning and counted in ``skipped``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from tasks.engine.data import file_key, hash_split, write_tsv as rows_to_tsv
from tasks.engine.images import SkipsUndecodable, image_problem, read_image
from tasks.engine.records import is_int, json_file_object, json_record, numbered_lines, text_field, warn_skipped
from tasks.engine.sets import Format
from zoo.errors import ZooError

_HEADERS = (("file", "caption"), ("image", "caption"), ("file_name", "caption"))
CACHE_LIMIT_BYTES = 1 << 30             # decoded pixels a dataset keeps in memory at most
_COCO_SPLITS = {"train": "captions_train", "validation": "captions_val", "test": "captions_test"}


@dataclass(frozen=True)
class CaptionedImage:
    """One image file and its reference captions."""

    path: Path
    captions: tuple[str, ...]


class CaptionDataset(SkipsUndecodable, Dataset):
    """Captioned images as sample dicts ``{"image", "captions", "path"}``.

    Attributes: ``records``, ``source`` (for messages), ``split``, ``skipped`` (undecodable images)
    ``reader`` (split -> the same source's samples of that split: the nearest-neighbour baseline
    reads its training images through it; None when there is none) and ``baseline`` (that baseline's
    scores once computed, see ``tasks.captioning.evaluation.baseline_scores``). Decoded images are kept in
    memory up to :data:`CACHE_LIMIT_BYTES`, so epochs after the first decode nothing.
    """

    def __init__(self, records: list[CaptionedImage], source: str, split: str, skipped: int = 0,
                 reader: Callable[[str], "CaptionDataset"] | None = None) -> None:
        self.records, self.source, self.split, self.skipped, self.reader = records, source, split, skipped, reader
        self.baseline: dict[str, float] | None = None
        self._cache: dict[int, torch.Tensor] = {}
        self._cached_bytes = 0
        self._undecodable: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def _read_image(self, position: int) -> torch.Tensor:
        """The image of ``records[position]`` (3, H, W) uint8, kept in memory while under the cache limit."""
        image = self._cache.get(position)
        if image is None:
            image = read_image(self.records[position].path)
            if self._cached_bytes + image.numel() <= CACHE_LIMIT_BYTES:
                self._cache[position] = image
                self._cached_bytes += image.numel()
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The sample at ``index``; an image that fails to decode is skipped (warned, counted) for the next."""
        position, image = self.decoded(index)
        record = self.records[position]
        return {"image": image, "captions": list(record.captions), "path": str(record.path)}


def _finalize(records: list[CaptionedImage], source: str, split: str,
              reader: Callable[[str], CaptionDataset]) -> CaptionDataset:
    """Probe each image's header: unreadable ones are skipped (one warning) and counted."""
    checked = [(record, image_problem(record.path)) for record in records]
    kept, failures = [record for record, problem in checked if not problem], [p for _, p in checked if p]
    if failures and not kept:
        raise ZooError(f"{source}: none of its {len(records)} images can be read; first: {failures[0]}")
    skipped = warn_skipped(source, failures, "unreadable image(s)")
    return CaptionDataset(kept, source, split, skipped, reader)


def _split(records: list[CaptionedImage], split: str, root: Path, source: str) -> list[CaptionedImage]:
    return hash_split(records, split, lambda record: file_key(record.path, root), source)


# ----------------------------------------------------------------------------- TSV


def read_tsv(path: Path, options: dict[str, str], split: str) -> CaptionDataset:
    """``FILE<TAB>CAPTION`` lines -> dataset; a malformed line raises naming file:line."""
    source = f"tsv:{path}"
    root = Path(options["images"]).expanduser() if "images" in options else path.parent
    grouped: dict[Path, list[str]] = {}
    for number, line in numbered_lines(path, blank=False):
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) != 2:
            found = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise ZooError(f"{where}: expected 'FILE<TAB>CAPTION' (one tab), found {found} in {line.strip()!r}")
        name, caption = fields[0].strip(), fields[1].strip()
        if not grouped and (name.lower(), caption.lower()) in _HEADERS:
            continue
        if not name:
            raise ZooError(f"{where}: empty file name before the tab")
        if not caption:
            raise ZooError(f"{where}: empty caption for {name!r}")
        image = root / name
        if not image.is_file():
            raise ZooError(f"{where}: image {image} not found (file names are relative to {root}; "
                           f"pass ?images=DIR to look elsewhere)")
        grouped.setdefault(image, []).append(caption)
    if not grouped:
        raise ZooError(f"{path}: no captions; expected lines 'FILE<TAB>CAPTION'")
    records = [CaptionedImage(image, tuple(captions)) for image, captions in grouped.items()]
    return _finalize(_split(records, split, root, source), source, split,
                     lambda other: read_tsv(path, options, other))


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    """Write ``(file, caption)`` rows as a captions TSV with its header (what :func:`read_tsv` reads)."""
    rows_to_tsv(path, rows, _HEADERS[0])


# ----------------------------------------------------------------------------- COCO captions


def read_coco_captions(path: Path, options: dict[str, str], split: str) -> CaptionDataset:
    """COCO captions JSON (or a folder of ``captions_<split>*.json``) -> dataset."""
    source = f"coco:{path}"
    if path.is_dir():
        files = _split_files(path, split)
        records = [record for file in files for record in _coco_records(file, options)]
    else:
        records = _split(_coco_records(path, options), split, path.parent, source)
    return _finalize(records, source, split, lambda other: read_coco_captions(path, options, other))


def _split_files(folder: Path, split: str) -> list[Path]:
    """The ``captions_*.json`` files of ``split`` in ``folder`` (or ``folder/annotations``); all for ``all``."""
    found = sorted(folder.glob("captions_*.json")) or sorted((folder / "annotations").glob("captions_*.json"))
    if not found:
        raise ZooError(f"coco:{folder}: no captions_*.json in it or in its annotations/ folder")
    if split == "all":
        return found
    if split not in _COCO_SPLITS:
        raise ZooError(f"unknown split {split!r}; expected {', '.join([*_COCO_SPLITS, 'all'])}")
    chosen = [file for file in found if file.name.startswith(_COCO_SPLITS[split])]
    if not chosen:
        raise ZooError(f"coco:{folder} has no {split} split: no {_COCO_SPLITS[split]}*.json among "
                       f"{[file.name for file in found]}; pass --split with one it has, or a captions JSON file")
    return chosen


def _coco_records(path: Path, options: dict[str, str]) -> list[CaptionedImage]:
    """The captioned images of one COCO captions file; malformed fields raise naming the file and record."""
    data = json_file_object(path, "a COCO captions JSON object with images and annotations", ("images", "annotations"))
    folders = _image_folders(path, options)
    files: dict[int, Path] = {}
    for i, image in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(image, dict) or not is_int(image.get("id")) or not isinstance(image.get("file_name"), str):
            raise ZooError(f"{where} needs an integer 'id' and a string 'file_name', got {image!r}")
        if image["id"] in files:
            raise ZooError(f"{where}: duplicate image id {image['id']}")
        files[image["id"]] = _find_image(image["file_name"], folders, where)
    captions: dict[int, list[str]] = {}
    for i, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        json_record(annotation, ("image_id", "caption"), where)
        if not is_int(annotation["image_id"]) or annotation["image_id"] not in files:
            raise ZooError(f"{where}: field 'image_id' {annotation['image_id']!r} is not an id in 'images'")
        caption = text_field(annotation, "caption", where).strip()
        captions.setdefault(annotation["image_id"], []).append(" ".join(caption.split()))
    uncaptioned = len(files) - len(captions)
    if uncaptioned:
        warnings.warn(f"{path}: left out {uncaptioned} image(s) without a caption", stacklevel=3)
    if not captions:
        raise ZooError(f"{path}: no captions in 'annotations'")
    return [CaptionedImage(files[image_id], tuple(texts)) for image_id, texts in captions.items()]


def _image_folders(path: Path, options: dict[str, str]) -> list[Path]:
    """Where the images of COCO file ``path`` may be: ``?images=DIR``, else the candidates of the module doc."""
    if "images" in options:
        return [Path(options["images"]).expanduser()]
    tag = path.stem.removeprefix("captions_")
    return [path.parent, path.parent / "images", path.parent / tag, path.parent.parent / tag]


def _find_image(file_name: str, folders: list[Path], where: str) -> Path:
    for folder in folders:
        if (folder / file_name).is_file():
            return folder / file_name
    raise ZooError(f"{where}: image {file_name!r} not found in {', '.join(map(str, folders))}; "
                   f"pass ?images=DIR to name its folder")


def _format(reader: Callable[[Path, dict[str, str], str], CaptionDataset]) -> Format:
    """A :class:`Format` of a reader of ``(path, options, split)`` taking ``?images=DIR``."""
    return Format(lambda spec, split: reader(Path(spec.path).expanduser(), spec.options, split), ("images",))


FORMATS: dict[str, Format] = {"tsv": _format(read_tsv), "coco": _format(read_coco_captions)}
