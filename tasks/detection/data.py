"""Object detection data: COCO, Pascal VOC and YOLO adapters, and the built-in scenes.

SPECs (``--data``):

- ``builtin`` / ``builtin:NAME``: scenes made by :func:`prepare` (see ``BUILTIN_SETS``), stored
  as a COCO dataset per split and read back through the COCO adapter.
- ``coco:ANN.json[?images=DIR]``: COCO detection JSON. Images are looked up in ``DIR`` when
  given, else beside the JSON, else in ``images/`` beside it. Categories map to contiguous
  label ids in sorted category-id order; ``iscrowd=1`` annotations are left out of targets.
  Ids must be integers (not ``true``), ``iscrowd`` the integer 0 or 1, and an image's
  ``width``/``height``, when given, must be the size of its file.
- ``voc:DIR[?classes=a,b]``: Pascal VOC (``Annotations/*.xml`` + ``JPEGImages/``, optional
  ``ImageSets/Main/{train,val,test}.txt``); ``difficult`` objects are left out; classes are the
  sorted names found unless given. VOC's 1-based inclusive corners become ``x1 = xmin - 1``,
  ``x2 = xmax`` (Detectron's convention), so a box covers exactly its pixels.
- ``yolo:DIR[?classes=a,b]``: ``images/`` + ``labels/*.txt`` (``class cx cy w h``, normalised),
  names from ``classes=``, ``classes.txt`` or ``data.yaml``'s ``names``. A box whose normalised
  values are outside [0, 1] is left out with a warning naming file:line (and counted in
  ``dropped_boxes``), not clamped.

Every adapter yields the same sample dict: ``image`` uint8 (3, H, W), ``boxes`` float32
(N, 4) xyxy in that image's pixels, ``labels`` int64 (N,), ``image_id`` int, ``path`` str.
Boxes with non-positive width or height, or wholly outside the image, are dropped and
counted in ``dropped_boxes``; boxes partly outside are clamped. Images are decoded by
:mod:`tasks.engine.images`, as in image classification (EXIF orientation, transparency on
white, 16-bit gray scaled). Unreadable images and decompression bombs are skipped with a
warning and counted in ``skipped``; malformed annotations and listings (not UTF-8 included)
raise ``ZooError`` naming the file and the record. Splits are disjoint by construction: a
source with its own lists (VOC ``ImageSets/Main``, YOLO ``images/{train,val,test}/``) keeps
them (:func:`~tasks.engine.data.named_split`: validation carved from train when it has no
list, no test split made up when it has none); a source without lists (a COCO file, a plain
VOC or YOLO folder) is cut 90/5/5 by a seeded hash of each image's path relative to it
(:func:`~tasks.engine.data.hash_split`). ``split="all"`` reads everything.
"""
from __future__ import annotations

import colorsys
import gzip
import json
import math
import tempfile
import time
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tasks.engine.data import (
    build_atomically,
    builtin_dir,
    data_root,
    debian_package_root,
    file_key,
    hash_split,
    is_prepared,
    named_split,
    parse_spec,
    read_utf8,
    split_lines,
)
from tasks.engine.images import load_image, probe_image
from zoo.errors import ZooError

VERSION = "1"
TASK = "detection"
SPLITS = ("train", "validation", "test")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
BUILTIN_SETS = {
    "default": "4,000/300/500 train/validation/test 128x128 scenes: 1-4 Fashion-MNIST items on scikit-image photos",
    "small": "600/100/100 train/validation/test 96x96 scenes, same recipe (fast tests and demo)",
}
QUICK_SET = "small"

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_IMAGE_ERRORS = (OSError, ValueError)  # what the shared decoder raises on missing or broken files
_SOURCE_SPLIT_NAMES = {"train": ("train",), "validation": ("val", "valid", "validation"), "test": ("test",)}


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class _Entry:
    """One annotated image before its file is checked (boxes not yet clamped)."""

    path: Path
    image_id: int
    boxes: np.ndarray  # (N, 4) float64: xyxy pixels, or normalised (cx, cy, w, h) when `normalized`
    labels: np.ndarray  # (N,) int64
    origins: list[str]  # where each box was written, for messages
    normalized: bool = False
    declared_size: tuple[int, int] | None = None  # (width, height) the annotation file states
    declared_at: str = ""  # where it states it, for messages
    rejected: tuple[str, ...] = ()  # boxes left out while parsing, each "where: why"


@dataclass(frozen=True)
class _Record:
    """One readable image with its cleaned targets."""

    path: Path
    image_id: int
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    labels: np.ndarray  # (N,) int64


class DetectionDataset(Dataset):
    """Annotated images as sample dicts; set ``transform`` (sample dict -> sample dict) to augment.

    Attributes: ``classes`` (label id = index), ``source`` (for messages), ``skipped`` (unreadable
    images), ``dropped_boxes`` (invalid boxes removed).
    """

    def __init__(self, records: list[_Record], classes: list[str], source: str, skipped: int, dropped_boxes: int):
        self.records = records
        self.classes = classes
        self.source = source
        self.skipped = skipped
        self.dropped_boxes = dropped_boxes
        self.transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._undecodable: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The sample at ``index``; an image that fails to decode is skipped (warned, counted) for the next."""
        if not -len(self.records) <= index < len(self.records):
            raise IndexError(f"{self.source}: index {index} out of range for {len(self.records)} images")
        for step in range(len(self.records)):
            position = (index + step) % len(self.records)
            if position in self._undecodable:
                continue
            record = self.records[position]
            try:
                image = _decode_image(record.path)
            except _IMAGE_ERRORS as err:
                self._undecodable.add(position)
                self.skipped += 1
                warnings.warn(f"skipped an image that cannot be decoded: {err}", stacklevel=2)
                continue
            sample = {
                "image": image,
                "boxes": torch.from_numpy(record.boxes.copy()),
                "labels": torch.from_numpy(record.labels.copy()),
                "image_id": record.image_id,
                "path": str(record.path),
            }
            return self.transform(sample) if self.transform is not None else sample
        raise ZooError(f"{self.source}: none of its {len(self.records)} images can be decoded")


def _decode_image(path: Path) -> torch.Tensor:
    """Decode an image file to uint8 (3, H, W) RGB with the decoder every task shares."""
    pixels = np.array(load_image(path))  # (H, W, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (3, H, W)


def _clean_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (keep (N,) bool, boxes clamped to the image (N, 4)): drop non-positive or wholly outside boxes."""
    positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    clamped = np.clip(boxes, 0, [width, height, width, height])
    inside = (clamped[:, 2] > clamped[:, 0]) & (clamped[:, 3] > clamped[:, 1])
    return positive & inside, clamped


def _finalize(entries: list[_Entry], classes: list[str], source: str) -> DetectionDataset:
    """Check each entry's image, clean its boxes and build the dataset (warning about what was left out)."""
    records: list[_Record] = []
    failures: list[str] = []
    dropped, first_dropped = 0, ""
    rejected = [why for entry in entries for why in entry.rejected]
    for entry in entries:
        try:
            width, height = probe_image(entry.path)
        except _IMAGE_ERRORS as err:
            failures.append(str(err))
            continue
        if entry.declared_size not in (None, (width, height)):
            raise ZooError(f"{entry.declared_at}: declares {entry.declared_size[0]}x{entry.declared_size[1]} pixels "
                           f"(width x height), but {entry.path} is {width}x{height}; fix 'width'/'height' or "
                           "the image (its boxes may be in another frame)")
        boxes = entry.boxes.reshape(-1, 4)  # (N, 4)
        if entry.normalized:
            centre, extent = boxes[:, :2], boxes[:, 2:] / 2
            boxes = np.concatenate([centre - extent, centre + extent], axis=1) * [width, height, width, height]
        keep, boxes = _clean_boxes(boxes, width, height)
        if not keep.all():
            first_dropped = first_dropped or entry.origins[int(np.flatnonzero(~keep)[0])]
            dropped += int((~keep).sum())
        records.append(_Record(entry.path, entry.image_id, boxes[keep].astype(np.float32), entry.labels[keep]))
    if failures and not records:
        raise FileNotFoundError(f"{source}: none of its {len(entries)} images can be read; first: {failures[0]}")
    for failure in failures:
        warnings.warn(f"skipped an unreadable image: {failure}", stacklevel=3)
    if rejected:
        warnings.warn(f"{source}: dropped {len(rejected)} box(es) while reading (first: {rejected[0]})", stacklevel=3)
    if dropped:
        warnings.warn(
            f"{source}: dropped {dropped} box(es) with non-positive width/height or wholly outside the image "
            f"(first: {first_dropped})",
            stacklevel=3,
        )
    return DetectionDataset(records, classes, source, len(failures), dropped + len(rejected))


def _pick_split(entries: list[_Entry], named: dict[str, list[_Entry]], split: str, root: Path,
                source: str) -> list[_Entry]:
    """The source's own lists when it has any (:func:`named_split`), else a hash of each image's path."""
    def key(entry: _Entry) -> str:
        return file_key(entry.path, root)

    if named:
        return named_split(split, entries, named, key, source)
    return hash_split(entries, split, key, source)


def _check_options(options: dict[str, str], allowed: set[str], source: str) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise ZooError(f"{source}: unknown option(s) {sorted(unknown)}; this format takes {sorted(allowed)}")


def _class_option(value: str, source: str) -> list[str]:
    """Parse ``classes=a,b,c``; empty or repeated names raise."""
    names = [name.strip() for name in value.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ZooError(f"{source}: option classes={value!r} must be distinct, non-empty names separated by commas")
    return names


# ----------------------------------------------------------------------------- public API


def read(spec: str, split: str) -> DetectionDataset:
    """Read ``builtin[:NAME]``, ``coco:ANN.json``, ``voc:DIR`` or ``yolo:DIR`` (see the module docstring).

    Built-in sets take ``split`` in train | validation | test; user formats also take ``all``.
    """
    parsed = parse_spec(spec)
    if parsed.is_builtin:
        return _read_builtin(parsed.path or "default", split)
    readers = {"coco": _read_coco, "voc": _read_voc, "yolo": _read_yolo}
    if parsed.format not in readers or not parsed.path:
        raise ValueError(f"--data {spec!r}: detection reads builtin[:NAME], coco:ANN.json, voc:DIR or yolo:DIR")
    return readers[parsed.format](Path(parsed.path).expanduser(), parsed.options, split)


def _read_builtin(name: str, split: str) -> DetectionDataset:
    if name not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in detection set {name!r}; known: {sorted(BUILTIN_SETS)}")
    if split not in SPLITS:
        raise ValueError(f"built-in detection sets have the splits {SPLITS}, not {split!r}")
    dataset = _read_coco(builtin_dir(TASK, name, VERSION) / split / "annotations.json", {}, "all")
    dataset.source = f"builtin:{name} ({split})"
    return dataset


# ----------------------------------------------------------------------------- COCO


def _read_coco(path: Path, options: dict[str, str], split: str) -> DetectionDataset:
    """COCO detection JSON -> dataset; malformed fields raise naming the file and the record."""
    source = f"coco:{path}"
    _check_options(options, {"images"}, source)
    data = _load_json(path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ZooError(f"{path}: the top-level field '{key}' is missing or not a list")
    names: dict[int, str] = {}
    for i, category in enumerate(data["categories"]):
        if not (_is_int(_get(category, "id")) and isinstance(_get(category, "name"), str)):
            raise ZooError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name', got {category!r}")
        if category["id"] in names:
            raise ZooError(f"{path}: categories[{i}]: duplicate category id {category['id']}")
        names[category["id"]] = category["name"]
    label_of = {category_id: label for label, category_id in enumerate(sorted(names))}

    images_dir = Path(options["images"]).expanduser() if "images" in options else None
    targets: dict[int, tuple[Path, list[list[float]], list[int], list[str]]] = {}
    declared: dict[int, tuple[tuple[int, int] | None, str]] = {}
    for i, image in enumerate(data["images"]):
        if not (_is_int(_get(image, "id")) and isinstance(_get(image, "file_name"), str) and image["file_name"]):
            raise ZooError(f"{path}: images[{i}] needs an integer 'id' and a string 'file_name', got {image!r}")
        if image["id"] in targets:
            raise ZooError(f"{path}: images[{i}]: duplicate image id {image['id']}")
        sides = [image.get(key) for key in ("width", "height")]
        for key, value in zip(("width", "height"), sides):
            if value is not None and not (_is_int(value) and value > 0):
                raise ZooError(f"{path}: images[{i}]: field '{key}' must be a positive integer, got {value!r}")
        targets[image["id"]] = (_coco_image_path(path.parent, images_dir, image["file_name"]), [], [], [])
        declared[image["id"]] = (tuple(sides) if None not in sides else None, f"{path}: images[{i}]")

    for i, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(annotation, dict):
            raise ZooError(f"{where}: expected an object, got {annotation!r}")
        for key in ("image_id", "category_id", "bbox"):
            if key not in annotation:
                raise ZooError(f"{where}: missing the field '{key}'")
        for key in ("image_id", "category_id"):
            if not _is_int(annotation[key]):
                raise ZooError(f"{where}: field '{key}' must be an integer id, got {annotation[key]!r}")
        bbox = annotation["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise ZooError(f"{where}: field 'bbox' must be 4 finite numbers [x, y, width, height], got {bbox!r}")
        if annotation["image_id"] not in targets:
            raise ZooError(f"{where}: field 'image_id' {annotation['image_id']!r} is not an id in 'images'")
        if annotation["category_id"] not in label_of:
            raise ZooError(f"{where}: field 'category_id' {annotation['category_id']!r} is not an id in 'categories'")
        crowd = annotation.get("iscrowd", 0)
        if not (_is_int(crowd) and crowd in (0, 1)):
            raise ZooError(f"{where}: field 'iscrowd' must be the integer 0 or 1, got {crowd!r}")
        if crowd:
            continue
        x, y, w, h = (float(v) for v in bbox)
        _, boxes, labels, origins = targets[annotation["image_id"]]
        boxes.append([x, y, x + w, y + h])
        labels.append(label_of[annotation["category_id"]])
        origins.append(where)

    entries = [
        _Entry(image_path, image_id, np.array(boxes, dtype=np.float64).reshape(-1, 4),
               np.array(labels, dtype=np.int64), origins, declared_size=declared[image_id][0],
               declared_at=declared[image_id][1])
        for image_id, (image_path, boxes, labels, origins) in targets.items()
    ]
    classes = [names[category_id] for category_id in sorted(names)]
    return _finalize(_pick_split(entries, {}, split, path.parent, source), classes, source)


def _coco_image_path(json_dir: Path, images_dir: Path | None, file_name: str) -> Path:
    """``images_dir/file_name`` when given, else beside the JSON, else in ``images/`` beside it."""
    if images_dir is not None:
        return images_dir / file_name
    beside = json_dir / file_name
    return beside if beside.exists() else json_dir / "images" / file_name


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    text = read_utf8(path)
    if not text.strip():
        raise ZooError(f"{path}: empty file; expected a COCO JSON object with images, annotations and categories")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a COCO JSON object with images, annotations and categories")
    return data


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------- Pascal VOC


def _read_voc(root: Path, options: dict[str, str], split: str) -> DetectionDataset:
    """Pascal VOC folder -> dataset; a malformed XML raises naming the file and the object."""
    source = f"voc:{root}"
    _check_options(options, {"classes"}, source)
    xml_files = sorted((root / "Annotations").glob("*.xml"))
    if not xml_files:
        raise FileNotFoundError(f"{source}: no Annotations/*.xml (a VOC folder holds Annotations/ and JPEGImages/)")
    parsed = [_parse_voc_xml(xml) for xml in xml_files]
    if "classes" in options:
        classes = _class_option(options["classes"], source)
    else:
        classes = sorted({name for _, objects in parsed for name, _, _ in objects})
    label_of = {name: label for label, name in enumerate(classes)}

    entries: dict[str, _Entry] = {}
    for image_id, (xml, (file_name, objects)) in enumerate(zip(xml_files, parsed)):
        boxes, labels, origins = [], [], []
        for k, (name, difficult, box) in enumerate(objects):
            if name not in label_of:
                raise ZooError(f"{xml}: object {k}: class {name!r} is not in classes {classes}")
            if not difficult:
                boxes.append(box)
                labels.append(label_of[name])
                origins.append(f"{xml}: object {k}")
        entries[xml.stem] = _Entry(
            root / "JPEGImages" / file_name, image_id,
            np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels, dtype=np.int64), origins,
        )
    named = {}
    for split_name, (file_stem, *_) in _SOURCE_SPLIT_NAMES.items():
        listing = root / "ImageSets" / "Main" / f"{file_stem}.txt"
        if listing.is_file():
            named[split_name] = _voc_listing(listing, entries)
    return _finalize(_pick_split(list(entries.values()), named, split, root, source), classes, source)


def _parse_voc_xml(path: Path) -> tuple[str, list[tuple[str, bool, list[float]]]]:
    """(image file name, [(class name, difficult, xyxy box)]) from one VOC annotation file."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise ZooError(f"{path}: not valid XML ({err})") from None
    file_name = (root.findtext("filename") or "").strip() or f"{path.stem}.jpg"
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ZooError(f"{path}: object {k}: missing <name>")
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise ZooError(f"{path}: object {k}: <difficult> must be 0 or 1, got {difficult!r}")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ZooError(f"{path}: object {k}: missing <bndbox>")
        corners = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = bndbox.findtext(tag)
            try:
                corners.append(float(text))
            except (TypeError, ValueError):
                corners.append(math.nan)
            if not math.isfinite(corners[-1]):
                raise ZooError(f"{path}: object {k}: <bndbox><{tag}> must be a number, got {text!r}")
        xmin, ymin, xmax, ymax = corners
        objects.append((name, difficult == "1", [xmin - 1, ymin - 1, xmax, ymax]))
    return file_name, objects


def _voc_listing(listing: Path, entries: dict[str, _Entry]) -> list[_Entry]:
    """The entries named by an ``ImageSets/Main/<split>.txt`` file (one image id per line)."""
    chosen = []
    for number, line in enumerate(split_lines(read_utf8(listing)), 1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] not in entries:
            raise ZooError(f"{listing}:{number}: no Annotations/{fields[0]}.xml for the image id {fields[0]!r}")
        chosen.append(entries[fields[0]])
    return chosen


# ----------------------------------------------------------------------------- YOLO


def _read_yolo(root: Path, options: dict[str, str], split: str) -> DetectionDataset:
    """YOLO folder (``images/`` + ``labels/``) -> dataset; a bad label line raises naming file:line.

    An image without a label file has no objects. ``images/{train,val,test}/`` subfolders,
    when present, are the source's own splits.
    """
    source = f"yolo:{root}"
    _check_options(options, {"classes"}, source)
    images_root, labels_root = root / "images", root / "labels"
    images = sorted(p for p in images_root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"{source}: no images under {images_root} (a YOLO folder holds images/ and labels/)")
    classes = _yolo_classes(root, options)
    entries = []
    for image_id, image in enumerate(images):
        label_file = labels_root / image.relative_to(images_root).with_suffix(".txt")
        parsed = _parse_yolo_labels(label_file, len(classes)) if label_file.is_file() else ([], [], [], [])
        boxes, labels, origins, rejected = parsed
        entries.append(
            _Entry(image, image_id, np.array(boxes, dtype=np.float64).reshape(-1, 4),
                   np.array(labels, dtype=np.int64), origins, normalized=True, rejected=tuple(rejected))
        )
    named = {}
    for split_name, folders in _SOURCE_SPLIT_NAMES.items():
        folder = next((f for f in folders if (images_root / f).is_dir()), None)
        if folder is not None:
            named[split_name] = [e for e in entries if e.path.relative_to(images_root).parts[0] == folder]
    return _finalize(_pick_split(entries, named, split, images_root, source), classes, source)


def _parse_yolo_labels(path: Path, num_classes: int) -> tuple[list[list[float]], list[int], list[str], list[str]]:
    """(normalised cxcywh boxes, labels, origins, rejected) of one YOLO label file.

    A line whose coordinates are outside [0, 1] is not clamped: it is left out and named in
    ``rejected`` (the caller warns and counts it); other malformed lines raise naming file:line.
    """
    boxes, labels, origins, rejected = [], [], [], []
    for number, line in enumerate(split_lines(read_utf8(path)), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise ZooError(f"{where}: expected 'class cx cy w h' (5 values), got {len(fields)}: {line.strip()!r}")
        try:
            label, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            raise ZooError(f"{where}: expected an integer class and 4 numbers, got {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ZooError(f"{where}: box values must be finite numbers, got {line.strip()!r}")
        if not 0 <= label < num_classes:
            raise ZooError(f"{where}: class {label} is out of range for {num_classes} class names")
        if not all(0.0 <= v <= 1.0 for v in values):
            rejected.append(f"{where}: normalised coordinates outside [0, 1] in {line.strip()!r}")
            continue
        boxes.append(values)
        labels.append(label)
        origins.append(where)
    return boxes, labels, origins, rejected


def _yolo_classes(root: Path, options: dict[str, str]) -> list[str]:
    """Class names from ``classes=``, ``classes.txt`` (one per line) or ``data.yaml`` (``names``)."""
    if "classes" in options:
        return _class_option(options["classes"], f"yolo:{root}")
    listing = root / "classes.txt"
    if listing.is_file():
        names = [line.strip() for line in split_lines(read_utf8(listing)) if line.strip()]
        if names:
            return names
        raise ZooError(f"{listing}: no class names (expected one name per line)")
    config = root / "data.yaml"
    if config.is_file():
        import yaml

        try:
            data = yaml.safe_load(read_utf8(config))
        except yaml.YAMLError as err:
            raise ZooError(f"{config}: not valid YAML ({' '.join(str(err).split())})") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict) and sorted(names) == list(range(len(names))):
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list) or not names:
            raise ZooError(f"{config}: field 'names' must be a non-empty list or an {{0: name, 1: ...}} mapping")
        return [str(name) for name in names]
    raise ZooError(
        f"yolo:{root}: no class names; write classes.txt (one per line) or data.yaml with 'names', or pass ?classes=a,b"
    )


# ----------------------------------------------------------------------------- built-in scenes


@dataclass(frozen=True)
class _Recipe:
    """How one built-in set is generated."""

    size: int  # scene side in pixels
    counts: dict[str, int]  # scenes per split
    item_sides: tuple[int, int]  # range of an item's pasted side in pixels
    seed: int


_RECIPES = {
    "default": _Recipe(128, {"train": 4000, "validation": 300, "test": 500}, (24, 64), seed=0),
    "small": _Recipe(96, {"train": 600, "validation": 100, "test": 100}, (18, 48), seed=1),
}
_MAX_ITEMS = 4
_MAX_IOU = 0.1  # placements overlapping an earlier item's box more than this are redrawn
_PLACEMENT_TRIES = 30
_ITEM_THRESHOLD = 12  # Fashion-MNIST intensities at or below this are the item's black surround
_FASHION_MNIST = "usr/share/datasets/fashion-mnist"
# Photographs and textures shipped inside the scikit-image wheel (skimage/data/); read as files,
# never through skimage.data's fetchers, some of which download.
_BACKGROUNDS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
    "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "rocket.jpg",
)
# Disjoint regions of every background, as fractions (x0, y0, x1, y1): crops never cross splits.
_REGIONS = {"train": (0.0, 0.0, 0.6, 1.0), "validation": (0.6, 0.0, 1.0, 0.5), "test": (0.6, 0.5, 1.0, 1.0)}


def prepare(names: list[str] | None = None, force: bool = False) -> None:
    """Generate the named built-in sets (all when None) as COCO datasets under ``data_root()/detection``.

    Each split is ``<set>/<split>/annotations.json`` + ``images/*.png``. Items come from
    Fashion-MNIST (Debian ``dataset-fashion-mnist``, fetched with ``apt-get download``): train
    scenes from its train file, validation and test scenes from disjoint halves of its test file.
    A set already prepared with this ``VERSION`` is kept unless ``force``.
    """
    names = list(BUILTIN_SETS) if names is None else names
    unknown = set(names) - set(BUILTIN_SETS)
    if unknown:
        raise ValueError(f"unknown built-in detection set(s) {sorted(unknown)}; known: {sorted(BUILTIN_SETS)}")
    todo = [name for name in names if force or not is_prepared(TASK, name, VERSION)]
    for name in names:
        if name not in todo:
            print(f"detection:{name} already prepared (version {VERSION})")
    if not todo:
        return
    with tempfile.TemporaryDirectory() as workdir:
        fashion = _load_fashion_mnist(Path(workdir))
    backgrounds = _load_backgrounds()
    for name in todo:
        start, recipe = time.perf_counter(), _RECIPES[name]
        with build_atomically(TASK, name, VERSION) as folder:
            for split_index, split in enumerate(SPLITS):
                _write_scenes(folder / split, recipe, split, split_index, fashion, backgrounds)
        counts = "/".join(str(recipe.counts[split]) for split in SPLITS)
        print(f"detection:{name}: {counts} scenes of {recipe.size}x{recipe.size} in "
              f"{time.perf_counter() - start:.0f}s -> {data_root() / TASK / name}")


def _load_fashion_mnist(workdir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train" | "test": (images uint8 (N, 28, 28), labels int64 (N,))} from the Debian package."""
    folder = debian_package_root("dataset-fashion-mnist", workdir) / _FASHION_MNIST
    return {
        part: (
            _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz"),
            _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64),
        )
        for part, prefix in (("train", "train"), ("test", "t10k"))
    }


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes (the MNIST format) into an array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _load_backgrounds() -> dict[str, Image.Image]:
    """The bundled scikit-image photographs and textures, as RGB PIL images."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    backgrounds = {}
    for name in _BACKGROUNDS:
        with Image.open(folder / name) as image:
            backgrounds[name] = image.convert("RGB")
    return backgrounds


def _item_pool(fashion: dict[str, tuple[np.ndarray, np.ndarray]], split: str) -> tuple[str, np.ndarray]:
    """(Fashion-MNIST part, item indices) a split draws from; the three pools are disjoint."""
    if split == "train":
        return "train", np.arange(len(fashion["train"][1]))
    half = len(fashion["test"][1]) // 2
    return "test", np.arange(half) if split == "validation" else np.arange(half, len(fashion["test"][1]))


def _write_scenes(
    folder: Path, recipe: _Recipe, split: str, split_index: int,
    fashion: dict[str, tuple[np.ndarray, np.ndarray]], backgrounds: dict[str, Image.Image],
) -> None:
    """Write one split's scenes as PNGs plus a COCO ``annotations.json`` (with provenance fields)."""
    rng = np.random.default_rng([recipe.seed, split_index])
    part, pool = _item_pool(fashion, split)
    items, item_labels = fashion[part]
    order = rng.permutation(pool)
    (folder / "images").mkdir(parents=True)
    names = sorted(backgrounds)
    images, annotations, used = [], [], 0
    for image_id in range(1, recipe.counts[split] + 1):
        background = names[rng.integers(len(names))]
        scene, crop = _background_crop(backgrounds[background], _REGIONS[split], recipe.size, rng)
        placed: list[list[int]] = []
        for _ in range(rng.integers(1, _MAX_ITEMS + 1)):
            index = int(order[used % len(order)])
            used += 1
            pasted = _paste_item(scene, items[index], placed, recipe, rng)
            if pasted is None:
                continue
            box, area = pasted
            placed.append(box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(item_labels[index]) + 1,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "area": area, "iscrowd": 0,
                "source": {"fashion_mnist": part, "index": index},
            })
        file_name = f"{image_id:06d}.png"
        Image.fromarray(scene).save(folder / "images" / file_name, compress_level=1)  # 3x faster, ~4% larger
        images.append({
            "id": image_id, "file_name": file_name, "width": recipe.size, "height": recipe.size,
            "background": {"file": background, "crop": crop},
        })
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(FASHION_MNIST_CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")


def _background_crop(
    background: Image.Image, region: tuple[float, float, float, float], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[int]]:
    """A random square crop inside ``region`` of the background, resized to (size, size, 3) uint8, and [x, y, w, h]."""
    width, height = background.size
    x0, y0, x1, y1 = int(region[0] * width), int(region[1] * height), int(region[2] * width), int(region[3] * height)
    largest = min(x1 - x0, y1 - y0)
    side = int(rng.integers(largest // 2, largest + 1))
    x, y = int(rng.integers(x0, x1 - side + 1)), int(rng.integers(y0, y1 - side + 1))
    scene = np.array(background.resize((size, size), Image.BILINEAR, box=(x, y, x + side, y + side)))
    return scene, [x, y, side, side]


def _paste_item(
    scene: np.ndarray, item: np.ndarray, placed: list[list[int]], recipe: _Recipe, rng: np.random.Generator
) -> tuple[list[int], int] | None:
    """Blend one tinted item (28, 28) into ``scene`` (S, S, 3) in place at a random scale and place.

    Returns (the tight xyxy box of its pixels, its pixel count), or None when no place overlaps
    the earlier ``placed`` boxes by at most ``_MAX_IOU``.
    """
    side = rng.integers(recipe.item_sides[0], recipe.item_sides[1] + 1)
    aspect = math.sqrt(math.exp(rng.uniform(math.log(0.8), math.log(1.25))))
    w, h = (min(recipe.size, max(8, round(side * f))) for f in (aspect, 1 / aspect))
    gray = np.array(Image.fromarray(item).resize((w, h), Image.BILINEAR)).astype(np.float32)  # (h, w)
    mask = gray > _ITEM_THRESHOLD  # (h, w)
    if not mask.any():
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    for _ in range(_PLACEMENT_TRIES):
        x, y = int(rng.integers(0, recipe.size - w + 1)), int(rng.integers(0, recipe.size - h + 1))
        box = [x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1]
        if all(_iou(box, other) <= _MAX_IOU for other in placed):
            break
    else:
        return None
    colour = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0)))  # (3,)
    layer = (0.3 + 0.7 * gray / 255)[..., None] * colour * 255  # (h, w, 3): the item's shading, tinted
    alpha = np.where(mask, np.clip(gray / 48, 0, 1), 0)[..., None]  # (h, w, 1): soft edges, clear surround
    under = scene[y:y + h, x:x + w].astype(np.float32)  # (h, w, 3)
    scene[y:y + h, x:x + w] = np.round(alpha * layer + (1 - alpha) * under).astype(np.uint8)
    return box, int(mask.sum())


def _iou(a: list[int], b: list[int]) -> float:
    """Intersection over union of two xyxy boxes."""
    inter_w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union
