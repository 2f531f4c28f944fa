"""Object detection formats: COCO, Pascal VOC and YOLO adapters, each a :class:`Format`.

SPECs (``--data``):

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

import math
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from tasks.engine.data import file_key, hash_split, named_split, read_utf8
from tasks.engine.images import IMAGE_ERRORS, SkipsUndecodable, probe_image
from tasks.engine.records import (class_names, is_int, json_file_object, json_record, nonempty, numbered_lines,
                                  warn_skipped)
from tasks.engine.sets import Format
from zoo.errors import ZooError

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_SOURCE_SPLIT_NAMES = {"train": ("train",), "validation": ("val", "valid", "validation"), "test": ("test",)}


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class _Entry:
    """One annotated image before its file is checked (boxes not yet clamped)."""

    path: Path
    image_id: int
    boxes: list[list[float]]  # N boxes: xyxy pixels, or normalised (cx, cy, w, h) when `normalized`
    labels: list[int]  # N labels
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


class DetectionDataset(SkipsUndecodable, Dataset):
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
        position, image = self.decoded(index)
        record = self.records[position]
        sample = {
            "image": image,
            "boxes": torch.from_numpy(record.boxes.copy()),
            "labels": torch.from_numpy(record.labels.copy()),
            "image_id": record.image_id,
            "path": str(record.path),
        }
        return self.transform(sample) if self.transform is not None else sample


def _finalize(entries: list[_Entry], classes: list[str], source: str) -> DetectionDataset:
    """Check each entry's image, clean its boxes and build the dataset (warning about what was left out)."""
    records: list[_Record] = []
    failures: list[str] = []
    dropped, first_dropped = 0, ""
    rejected = [why for entry in entries for why in entry.rejected]
    for entry in entries:
        try:
            width, height = probe_image(entry.path)
        except IMAGE_ERRORS as err:
            failures.append(str(err))
            continue
        if entry.declared_size not in (None, (width, height)):
            raise ZooError(f"{entry.declared_at}: declares {entry.declared_size[0]}x{entry.declared_size[1]} pixels "
                           f"(width x height), but {entry.path} is {width}x{height}; fix 'width'/'height' or "
                           "the image (its boxes may be in another frame)")
        boxes = np.array(entry.boxes, dtype=np.float64).reshape(-1, 4)  # (N, 4)
        if entry.normalized:
            centre, extent = boxes[:, :2], boxes[:, 2:] / 2
            boxes = np.concatenate([centre - extent, centre + extent], axis=1) * [width, height, width, height]
        positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = np.clip(boxes, 0, [width, height, width, height])       # partly outside: clamped
        keep = positive & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])   # wholly outside: dropped
        if not keep.all():
            first_dropped = first_dropped or entry.origins[int(np.flatnonzero(~keep)[0])]
            dropped += int((~keep).sum())
        records.append(_Record(entry.path, entry.image_id, boxes[keep].astype(np.float32),
                               np.array(entry.labels, dtype=np.int64)[keep]))
    if failures and not records:
        raise FileNotFoundError(f"{source}: none of its {len(entries)} images can be read; first: {failures[0]}")
    warn_skipped(source, failures, "unreadable image(s)")
    if rejected:
        warnings.warn(f"{source}: dropped {len(rejected)} box(es) while reading (first: {rejected[0]})", stacklevel=3)
    if dropped:
        warnings.warn(f"{source}: dropped {dropped} box(es) with non-positive width/height or wholly outside the "
                      f"image (first: {first_dropped})", stacklevel=3)
    return DetectionDataset(records, classes, source, len(failures), dropped + len(rejected))


def _pick_split(entries: list[_Entry], named: dict[str, list[_Entry]], split: str, root: Path,
                source: str) -> list[_Entry]:
    """The source's own lists when it has any (:func:`named_split`), else a hash of each image's path."""
    def key(entry: _Entry) -> str:
        return file_key(entry.path, root)

    return named_split(split, entries, named, key, source) if named else hash_split(entries, split, key, source)


# ----------------------------------------------------------------------------- COCO


def read_coco(path: Path, options: dict[str, str], split: str) -> DetectionDataset:
    """COCO detection JSON -> dataset; malformed fields raise naming the file and the record."""
    source = f"coco:{path}"
    data = json_file_object(path, "a COCO JSON object with images, annotations and categories",
                            ("images", "annotations", "categories"))
    names: dict[int, str] = {}
    for i, category in enumerate(data["categories"]):
        if not (is_int(_get(category, "id")) and isinstance(_get(category, "name"), str)):
            raise ZooError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name', got {category!r}")
        if category["id"] in names:
            raise ZooError(f"{path}: categories[{i}]: duplicate category id {category['id']}")
        names[category["id"]] = category["name"]
    label_of = {category_id: label for label, category_id in enumerate(sorted(names))}

    images_dir = Path(options["images"]).expanduser() if "images" in options else None
    entries: dict[int, _Entry] = {}    # by image id; the annotations fill each entry's lists
    for i, image in enumerate(data["images"]):
        if not (is_int(_get(image, "id")) and isinstance(_get(image, "file_name"), str) and image["file_name"]):
            raise ZooError(f"{path}: images[{i}] needs an integer 'id' and a string 'file_name', got {image!r}")
        if image["id"] in entries:
            raise ZooError(f"{path}: images[{i}]: duplicate image id {image['id']}")
        sides = [image.get(key) for key in ("width", "height")]
        for key, value in zip(("width", "height"), sides):
            if value is not None and not (is_int(value) and value > 0):
                raise ZooError(f"{path}: images[{i}]: field '{key}' must be a positive integer, got {value!r}")
        entries[image["id"]] = _Entry(_coco_image_path(path.parent, images_dir, image["file_name"]), image["id"],
                                      [], [], [], declared_size=tuple(sides) if None not in sides else None,
                                      declared_at=f"{path}: images[{i}]")

    for i, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        json_record(annotation, ("image_id", "category_id", "bbox"), where)
        for key in ("image_id", "category_id"):
            if not is_int(annotation[key]):
                raise ZooError(f"{where}: field '{key}' must be an integer id, got {annotation[key]!r}")
        bbox = annotation["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
            raise ZooError(f"{where}: field 'bbox' must be 4 finite numbers [x, y, width, height], got {bbox!r}")
        if annotation["image_id"] not in entries:
            raise ZooError(f"{where}: field 'image_id' {annotation['image_id']!r} is not an id in 'images'")
        if annotation["category_id"] not in label_of:
            raise ZooError(f"{where}: field 'category_id' {annotation['category_id']!r} is not an id in 'categories'")
        crowd = annotation.get("iscrowd", 0)
        if not (is_int(crowd) and crowd in (0, 1)):
            raise ZooError(f"{where}: field 'iscrowd' must be the integer 0 or 1, got {crowd!r}")
        if crowd:
            continue
        x, y, w, h = (float(v) for v in bbox)
        entry = entries[annotation["image_id"]]
        entry.boxes.append([x, y, x + w, y + h])
        entry.labels.append(label_of[annotation["category_id"]])
        entry.origins.append(where)
    classes = [names[category_id] for category_id in sorted(names)]
    return _finalize(_pick_split(list(entries.values()), {}, split, path.parent, source), classes, source)


def _coco_image_path(json_dir: Path, images_dir: Path | None, file_name: str) -> Path:
    """``images_dir/file_name`` when given, else beside the JSON, else in ``images/`` beside it."""
    if images_dir is not None:
        return images_dir / file_name
    beside = json_dir / file_name
    return beside if beside.exists() else json_dir / "images" / file_name


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


# ----------------------------------------------------------------------------- Pascal VOC


def _read_voc(root: Path, options: dict[str, str], split: str) -> DetectionDataset:
    """Pascal VOC folder -> dataset; a malformed XML raises naming the file and the object."""
    source = f"voc:{root}"
    xml_files = sorted((root / "Annotations").glob("*.xml"))
    if not xml_files:
        raise FileNotFoundError(f"{source}: no Annotations/*.xml (a VOC folder holds Annotations/ and JPEGImages/)")
    parsed = [_parse_voc_xml(xml) for xml in xml_files]
    if "classes" in options:
        classes = class_names(options["classes"], source)
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
        entries[xml.stem] = _Entry(root / "JPEGImages" / file_name, image_id, boxes, labels, origins)
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
    for number, line in numbered_lines(listing, blank=False):
        image_id = line.split()[0]
        if image_id not in entries:
            raise ZooError(f"{listing}:{number}: no Annotations/{image_id}.xml for the image id {image_id!r}")
        chosen.append(entries[image_id])
    return chosen


# ----------------------------------------------------------------------------- YOLO


def _read_yolo(root: Path, options: dict[str, str], split: str) -> DetectionDataset:
    """YOLO folder (``images/`` + ``labels/``) -> dataset; a bad label line raises naming file:line.

    An image without a label file has no objects. ``images/{train,val,test}/`` subfolders,
    when present, are the source's own splits.
    """
    source = f"yolo:{root}"
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
        entries.append(_Entry(image, image_id, boxes, labels, origins, normalized=True, rejected=tuple(rejected)))
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
    for number, line in numbered_lines(path, blank=False):
        fields = line.split()
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
        return class_names(options["classes"], f"yolo:{root}")
    listing = root / "classes.txt"
    if listing.is_file():
        return nonempty([line.strip() for _, line in numbered_lines(listing, blank=False)],
                        f"{listing}: no class names (expected one name per line)")
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
    raise ZooError(f"yolo:{root}: no class names; write classes.txt (one per line) or data.yaml with 'names', "
                   "or pass ?classes=a,b")


def _format(reader: Callable[[Path, dict[str, str], str], DetectionDataset], options: tuple[str, ...]) -> Format:
    """A :class:`Format` of a reader of ``(path, options, split)``."""
    return Format(lambda spec, split: reader(Path(spec.path).expanduser(), spec.options, split), options)


FORMATS: dict[str, Format] = {
    "coco": _format(read_coco, ("images",)),
    "voc": _format(_read_voc, ("classes",)),
    "yolo": _format(_read_yolo, ("classes",)),
}
