"""Captioning's built-in sets: detection's built-in scenes, captioned from their annotations.

``zoo data prepare captioning`` reads each split of detection's prepared set of the same name
(``default``: 4,000/300/500 scenes of 128x128, ``small``: 600/100/100 of 96x96) through
detection's COCO reader, captions every scene with :func:`tasks.captioning.captions.describe`
(its items' classes and boxes, the background picture its COCO record names) and writes
``<set>/<split>/captions.tsv`` + ``images/`` (hard links to detection's PNGs; copies where the file
system has none), read back through the TSV adapter. Splits are detection's, so no test scene is
ever trained on. Detection's set is prepared first when it is missing (the only fetching step).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from tasks.captioning.captions import describe
from tasks.captioning.formats import CaptionDataset, read_tsv, write_tsv
from tasks.detection.builtin import BUILTIN_SETS as DETECTION_SETS
from tasks.detection.formats import read_coco
from tasks.engine.data import builtin_dir, is_prepared
from tasks.engine.images import probe_image
from tasks.engine.sets import BUILTIN_SPLITS, BuiltinSet, prepare_sets

VERSION = "1"
CAPTIONS_FILE = "captions.tsv"


def caption_scenes(annotations: Path) -> list[tuple[Path, str]]:
    """(image file, caption) of every scene of a detection COCO file (read by detection's reader)."""
    scenes = read_coco(annotations, {}, "all")
    records = {image["id"]: image for image in json.loads(annotations.read_text(encoding="utf-8"))["images"]}
    captioned = []
    for scene in scenes.records:
        record = records[scene.image_id]
        background = (record.get("background") or {}).get("file")
        labels = [scenes.classes[label] for label in scene.labels.tolist()]
        width, height = (record["width"], record["height"]) if "width" in record else probe_image(scene.path)
        captioned.append((scene.path, describe(scene.boxes.tolist(), labels, width, height, background)))
    return captioned


def _read_prepared(folder: Path, split: str) -> CaptionDataset:
    """One split of a prepared set, through the TSV adapter."""
    dataset = read_tsv(folder / split / CAPTIONS_FILE, {}, "all")
    dataset.source, dataset.split = f"builtin:{folder.name} ({split})", split
    dataset.reader = lambda other: _read_prepared(folder, other)
    return dataset


def _builder(name: str) -> Callable[[Path], str]:
    """``build(folder)`` of the set ``name``: detection's set ``name``, captioned split by split."""
    def build(folder: Path) -> str:
        entry = DETECTION_SETS[name]
        if not is_prepared("detection", name, entry.version):
            prepare_sets("detection", DETECTION_SETS, [name])
        scenes = builtin_dir("detection", name, entry.version)
        counts = []
        for split in BUILTIN_SPLITS:
            (folder / split / "images").mkdir(parents=True)
            rows = []
            for image, caption in caption_scenes(scenes / split / "annotations.json"):
                try:        # a hard link to detection's PNG, or a copy where links fail (another file system)
                    os.link(image, folder / split / "images" / image.name)
                except OSError:
                    shutil.copyfile(image, folder / split / "images" / image.name)
                rows.append((f"images/{image.name}", caption))
            write_tsv(folder / split / CAPTIONS_FILE, rows)
            counts.append(str(len(rows)))
        return f"{'/'.join(counts)} captioned scenes from detection:{name}"

    return build


BUILTIN_SETS: dict[str, BuiltinSet] = {
    "default": BuiltinSet("4,000/300/500 train/validation/test 128x128 detection scenes, one caption each "
                          "(items, where, on what)", _builder("default"), _read_prepared, VERSION),
    "small": BuiltinSet("600/100/100 96x96 detection scenes, same captions (fast tests and demo)",
                        _builder("small"), _read_prepared, VERSION),
}
