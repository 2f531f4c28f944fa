"""Captioning data: the caption builder, the TSV and COCO-captions adapters, bad input, the built-in sets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo
from tasks.captioning.captions import describe, where
from tasks.captioning.formats import write_tsv
from tasks.detection.builtin import VERSION as DETECTION_VERSION
from tasks.engine.data import STAMP
from tasks.engine.sets import BUILTIN_SPLITS
from zoo.errors import ZooError
from zoo.storage import data_root

TASK = zoo.get_task("captioning")
SIDES = ("left", "right")


def captioned_folder(folder: Path, count: int) -> Path:
    """``count`` 32x32 images, a red square on the left or right half, captioned so; returns the TSV."""
    folder.mkdir(parents=True)
    rows = []
    for i in range(count):
        pixels = np.full((32, 32, 3), 200, np.uint8)
        x = 2 if i % 2 == 0 else 18
        pixels[10:22, x:x + 12] = (220, 30, 30)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        rows.append((f"{i}.png", f"a red square on the {SIDES[i % 2]}"))
    write_tsv(folder / "captions.tsv", rows)
    return folder / "captions.tsv"


def test_captions_name_items_in_reading_order_with_places_and_background() -> None:
    boxes = [[80, 80, 96, 96], [0, 0, 20, 20], [40, 40, 56, 56]]
    assert describe(boxes, ["Bag", "Ankle boot", "Sneaker"], 96, 96, "grass.png") == \
        "an ankle boot at the top left, a sneaker in the centre and a bag at the bottom right on grass"
    assert describe([[0, 40, 10, 50]], ["Coat"], 96, 96) == "a coat on the left"
    assert describe([], [], 96, 96, "hubble_deep_field.jpg") == "nothing on a starry sky"
    assert [where(r, c) for r in range(3) for c in range(3)] == [
        "at the top left", "at the top", "at the top right", "on the left", "in the centre", "on the right",
        "at the bottom left", "at the bottom", "at the bottom right"]
    with pytest.raises(ValueError, match="2 boxes for 1 labels"):
        describe([[0, 0, 1, 1]] * 2, ["Bag"], 8, 8)


def test_tsv_round_trip_groups_references_and_splits_disjointly(tmp_path: Path) -> None:
    tsv = captioned_folder(tmp_path / "set", 40)
    with tsv.open("a", encoding="utf-8") as out:
        out.write("0.png\tanother caption of image zero\n")
    everything = TASK.datasets(f"tsv:{tsv}", "all")
    assert len(everything) == 40
    first = everything[0]
    assert first["image"].shape == (3, 32, 32) and first["captions"] == ["a red square on the left",
                                                                        "another caption of image zero"]
    parts = [{s.path for s in TASK.datasets(f"tsv:{tsv}", split).records} for split in BUILTIN_SPLITS]
    assert sum(map(len, parts)) == 40 and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert TASK.datasets(f"tsv:{tsv}", "test").reader("train").split == "train"


def test_coco_captions_file_and_folder_layouts(tmp_path: Path) -> None:
    tsv = captioned_folder(tmp_path / "train2017", 6)
    lines = tsv.read_text().splitlines()[1:]
    data = {"images": [{"id": i, "file_name": f"{i}.png"} for i in range(6)],
            "annotations": [{"image_id": i, "caption": line.split("\t")[1]} for i, line in enumerate(lines)]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_train2017.json").write_text(json.dumps(data))
    train = TASK.datasets(f"coco:{tmp_path}", "train")       # images found in ../train2017 beside annotations/
    assert len(train) == 6 and train[1]["captions"] == ["a red square on the right"]
    assert len(TASK.datasets(f"coco:{tmp_path / 'annotations' / 'captions_train2017.json'}", "all")) == 6
    with pytest.raises(ZooError, match="has no validation split: no captions_val"):
        TASK.datasets(f"coco:{tmp_path}", "validation")


@pytest.mark.parametrize("line, message", [
    ("0.png a caption without a tab", r"captions.tsv:2: expected 'FILE<TAB>CAPTION' \(one tab\), found no tab"),
    ("0.png\t  ", r"captions.tsv:2: empty caption for '0.png'"),
    ("missing.png\ta caption", r"captions.tsv:2: image .*missing.png not found"),
    ("0.png\ta\tb", r"captions.tsv:2: .* found 2 tabs"),
])
def test_bad_tsv_lines_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    captioned_folder(tmp_path / "set", 2)
    tsv = tmp_path / "set" / "bad.tsv"
    tsv.write_text(f"1.png\tfine\n{line}\n", encoding="utf-8")
    with pytest.raises(ZooError, match=message.replace("captions.tsv", "bad.tsv")):
        TASK.datasets(f"tsv:{tsv}", "all")


@pytest.mark.parametrize("annotation, message", [
    ({"image_id": 7, "caption": "x"}, r"annotations\[0\]: field 'image_id' 7 is not an id in 'images'"),
    ({"image_id": 0}, r"annotations\[0\]: missing the field 'caption'"),
    ({"image_id": 0, "caption": " "}, r"annotations\[0\]: empty 'caption' field"),
])
def test_bad_coco_records_name_the_record(tmp_path: Path, annotation: dict, message: str) -> None:
    captioned_folder(tmp_path / "set", 1)
    path = tmp_path / "set" / "captions_x.json"
    path.write_text(json.dumps({"images": [{"id": 0, "file_name": "0.png"}], "annotations": [annotation]}))
    with pytest.raises(ZooError, match=message):
        TASK.datasets(f"coco:{path}", "all")


def test_a_corrupt_image_is_skipped_with_a_warning_and_counted(tmp_path: Path) -> None:
    tsv = captioned_folder(tmp_path / "set", 4)
    (tmp_path / "set" / "2.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        dataset = TASK.datasets(f"tsv:{tsv}", "all")
    assert len(dataset) == 3 and dataset.skipped == 1


def test_builtin_set_captions_detections_scenes_split_by_split(tmp_path: Path) -> None:
    from tests.test_detection_task import _coco

    scenes = data_root() / "detection" / "small"
    for split in BUILTIN_SPLITS:
        annotations = _coco(scenes / split, 3, seed=len(split))
        coco = json.loads(annotations.read_text())
        for image in coco["images"]:
            image.update(width=64, height=64, background={"file": "brick.png", "crop": [0, 0, 1, 1]})
        annotations.write_text(json.dumps(coco))
    (scenes / STAMP).write_text(DETECTION_VERSION)
    TASK.prepare(["small"])
    test = TASK.datasets("builtin:small", "test")
    assert len(test) == 3 and test.split == "test" and test.reader("train").split == "train"
    assert all(caption.endswith(" on a brick wall") and ("square" in caption or "bar" in caption)
               for record in test.records for caption in record.captions)
