"""Detection data: COCO / VOC / YOLO adapters, collation, box-aware transforms, built-in scenes."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from image_fixtures import TRICKY, bomb_png
import zoo
from tasks.detection import builtin
from tasks.engine.sets import BUILTIN_SPLITS
from zoo.storage import data_root
from tasks.detection.transforms import build_detection_transform, collate_detection
from tasks.engine.images import load_image, read_image
from zoo.errors import ZooError

TASK = zoo.get_task("detection")
read = TASK.datasets


@pytest.fixture(autouse=True)
def _temporary_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "cache"))


def _png(path: Path, width: int, height: int, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------- COCO


def _coco(tmp_path: Path) -> dict:
    _png(tmp_path / "images" / "a.png", 40, 30)
    _png(tmp_path / "images" / "b.png", 50, 60)
    return {
        "images": [{"id": 10, "file_name": "a.png"}, {"id": 20, "file_name": "b.png"}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [5, 6, 10, 8]},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [5, 6, -4, 8]},  # negative width: dropped
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 1},  # crowd: excluded
            {"id": 4, "image_id": 20, "category_id": 3, "bbox": [40, 50, 20, 20]},  # partly outside: clamped
            {"id": 5, "image_id": 20, "category_id": 7, "bbox": [70, 5, 5, 5]},  # wholly outside: dropped
        ],
    }


def _write_json(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj, indent=1))
    return path


def test_coco_reads_boxes_drops_invalid_and_excludes_crowd(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "ann.json", _coco(tmp_path))
    with pytest.warns(UserWarning, match=r"dropped 2 box.*annotations\[1\]"):
        ds = read(f"coco:{path}", "all")
    assert ds.classes == ["cat", "dog"]  # sorted category ids 3, 7 -> labels 0, 1
    assert (len(ds), ds.dropped_boxes, ds.skipped) == (2, 2, 0)
    first, second = ds[0], ds[1]
    assert first["image"].shape == (3, 30, 40) and first["image"].dtype == torch.uint8
    assert first["image_id"] == 10 and first["path"].endswith("a.png")
    assert torch.equal(first["boxes"], torch.tensor([[5.0, 6.0, 15.0, 14.0]]))
    assert first["labels"].tolist() == [1] and first["labels"].dtype == torch.int64
    assert torch.equal(second["boxes"], torch.tensor([[40.0, 50.0, 50.0, 60.0]]))
    assert second["labels"].tolist() == [0]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda c: c.pop("categories"), r"'categories' is missing"),
        (lambda c: c["annotations"][1].pop("bbox"), r"annotations\[1\]: missing the field 'bbox'"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), r"annotations\[0\]: field 'bbox' must be 4"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, "3", 4]), r"annotations\[0\]: field 'bbox'"),
        (lambda c: c["annotations"][3].update(category_id=99), r"annotations\[3\]: field 'category_id' 99"),
        (lambda c: c["annotations"][4].update(image_id=5), r"annotations\[4\]: field 'image_id' 5"),
        (lambda c: c["images"][1].pop("file_name"), r"images\[1\] needs .*'file_name'"),
    ],
)
def test_coco_malformed_field_is_named(tmp_path: Path, corrupt, message: str) -> None:
    coco = _coco(tmp_path)
    corrupt(coco)
    path = _write_json(tmp_path / "ann.json", coco)
    with pytest.raises(ValueError, match=f"ann.json: .*{message}"):
        read(f"coco:{path}", "all")


def test_coco_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ann.json"
    path.write_text('{\n"images": [],\n"annotations": [,]\n}')
    with pytest.raises(ValueError, match=r"ann.json:3: not valid JSON"):
        read(f"coco:{path}", "all")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read(f"coco:{tmp_path / 'missing.json'}", "all")


@pytest.mark.filterwarnings("ignore:.*dropped 1 box")
def test_coco_corrupt_image_skipped_and_images_option(tmp_path: Path) -> None:
    coco = _coco(tmp_path)
    (tmp_path / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "meta").mkdir()
    path = _write_json(tmp_path / "meta" / "ann.json", coco)
    with pytest.warns(UserWarning, match=r"b\.png"):
        ds = read(f"coco:{path}?images={tmp_path / 'images'}", "all")
    assert (len(ds), ds.skipped) == (1, 1)
    with pytest.raises(FileNotFoundError, match="none of its 2 images"):
        read(f"coco:{path}?images={tmp_path / 'nowhere'}", "all")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['image'\]"):
        read(f"coco:{path}?image=x", "all")


def test_user_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    for i in range(40):
        _png(tmp_path / f"{i}.png", 8, 8)
        coco["images"].append({"id": i, "file_name": f"{i}.png"})
    path = _write_json(tmp_path / "ann.json", coco)
    train, validation, test = ([s["image_id"] for s in read(f"coco:{path}", split)]
                               for split in ("train", "validation", "test"))
    assert len(train) >= 30 and validation and test
    assert sorted(train + validation + test) == list(range(40))  # disjoint, and together everything
    assert validation == [s["image_id"] for s in read(f"coco:{path}", "validation")]


# ----------------------------------------------------------------------------- VOC


def _voc_xml(path: Path, file_name: str, objects: list[tuple[str, int, tuple]]) -> None:
    body = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, difficult, b in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{file_name}</filename>{body}</annotation>")


def _voc(tmp_path: Path) -> Path:
    _png(tmp_path / "JPEGImages" / "one.png", 40, 30)
    _png(tmp_path / "JPEGImages" / "two.png", 20, 20)
    objects = [("horse", 0, (1, 1, 10, 20)), ("person", 1, (2, 2, 5, 5))]
    _voc_xml(tmp_path / "Annotations" / "one.xml", "one.png", objects)
    _voc_xml(tmp_path / "Annotations" / "two.xml", "two.png", [("person", 0, (11, 6, 20, 20))])
    return tmp_path


def test_voc_reads_objects_and_excludes_difficult(tmp_path: Path) -> None:
    ds = read(f"voc:{_voc(tmp_path)}", "all")
    assert ds.classes == ["horse", "person"] and len(ds) == 2
    one, two = ds[0], ds[1]
    assert torch.equal(one["boxes"], torch.tensor([[0.0, 0.0, 10.0, 20.0]]))  # 1-based inclusive -> xyxy
    assert one["labels"].tolist() == [0]  # the difficult person is left out
    assert torch.equal(two["boxes"], torch.tensor([[10.0, 5.0, 20.0, 20.0]])) and two["labels"].tolist() == [1]
    assert read(f"voc:{tmp_path}?classes=person,horse", "all")[0]["labels"].tolist() == [1]


def test_voc_errors_name_file_and_object(tmp_path: Path) -> None:
    _voc(tmp_path)
    with pytest.raises(ValueError, match=r"one\.xml: object 0: class 'horse' is not in classes"):
        read(f"voc:{tmp_path}?classes=person", "all")
    (tmp_path / "Annotations" / "two.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>a</xmin></bndbox></object></annotation>"
    )
    with pytest.raises(ValueError, match=r"two\.xml: object 0: <bndbox><xmin> must be a number"):
        read(f"voc:{tmp_path}", "all")


def test_voc_uses_its_own_split_lists(tmp_path: Path) -> None:
    _voc(tmp_path)
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("two\n")
    (main / "val.txt").write_text("one\n")
    assert [s["path"][-7:] for s in read(f"voc:{tmp_path}", "train")] == ["two.png"]
    assert [s["path"][-7:] for s in read(f"voc:{tmp_path}", "validation")] == ["one.png"]
    with pytest.raises(ZooError, match=r"has no test split; pass --split validation or a test listing"):
        read(f"voc:{tmp_path}", "test")  # never a slice of the train list
    (main / "val.txt").write_text("one\nthree\n")
    with pytest.raises(ValueError, match=r"val\.txt:2: no Annotations/three\.xml"):
        read(f"voc:{tmp_path}", "validation")


def test_voc_with_only_a_test_list_trains_on_the_rest(tmp_path: Path) -> None:
    _voc(tmp_path)
    _png(tmp_path / "JPEGImages" / "three.png", 20, 20)
    _voc_xml(tmp_path / "Annotations" / "three.xml", "three.png", [("horse", 0, (1, 1, 9, 9))])
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "test.txt").write_text("one\n")
    names = {split: sorted(Path(s["path"]).name for s in read(f"voc:{tmp_path}", split))
             for split in ("train", "validation", "test")}
    assert names["test"] == ["one.png"]
    assert sorted(names["train"] + names["validation"]) == ["three.png", "two.png"]  # the test image is in neither
    (main / "train.txt").write_text("two\none\n")
    with pytest.raises(ZooError, match=r"'JPEGImages/one.png' is in both its train and test lists"):
        read(f"voc:{tmp_path}", "train")


# ----------------------------------------------------------------------------- YOLO


def test_yolo_reads_normalised_boxes(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "x.png", 40, 20)
    _png(tmp_path / "images" / "y.png", 10, 10)  # no label file: no objects
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n\n0 0.25 0.5 0.0 0.2\n")
    (tmp_path / "classes.txt").write_text("car\nbike\n")
    with pytest.warns(UserWarning, match=r"dropped 1 box.*x\.txt:3"):
        ds = read(f"yolo:{tmp_path}", "all")
    assert ds.classes == ["car", "bike"] and ds.dropped_boxes == 1
    assert torch.allclose(ds[0]["boxes"], torch.tensor([[10.0, 5.0, 30.0, 15.0]])) and ds[0]["labels"].tolist() == [1]
    assert ds[1]["boxes"].shape == (0, 4) and ds[1]["labels"].shape == (0,)
    (tmp_path / "classes.txt").unlink()
    (tmp_path / "data.yaml").write_text("names:\n  0: car\n  1: bike\n")
    with pytest.warns(UserWarning, match="dropped 1 box"):
        assert read(f"yolo:{tmp_path}", "all").classes == ["car", "bike"]


def test_yolo_split_folders_are_the_splits(tmp_path: Path) -> None:
    for part, count in (("train", 6), ("val", 2)):
        for i in range(count):
            _png(tmp_path / "images" / part / f"{part}{i}.png", 8, 8)
    (tmp_path / "classes.txt").write_text("car\n")
    names = {split: {Path(s["path"]).name for s in read(f"yolo:{tmp_path}", split)} for split in ("train", "validation")}
    assert names == {"train": {f"train{i}.png" for i in range(6)}, "validation": {"val0.png", "val1.png"}}
    with pytest.raises(ZooError, match=r"yolo:.* has no test split; pass --split validation"):
        read(f"yolo:{tmp_path}", "test")  # before: a slice of the training images
    _png(tmp_path / "images" / "test" / "test0.png", 8, 8)
    assert [Path(s["path"]).name for s in read(f"yolo:{tmp_path}", "test")] == ["test0.png"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "expected 'class cx cy w h'"),
        ("a 0.5 0.5 0.2 0.2", "expected an integer class"),
        ("5 0.5 0.5 0.2 0.2", "class 5 is out of range"),
    ],
)
def test_yolo_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    _png(tmp_path / "images" / "x.png", 40, 20)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(ValueError, match=rf"x\.txt:2: {message}"):
        read(f"yolo:{tmp_path}?classes=a,b", "all")


def test_yolo_without_class_names_says_where_to_put_them(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "x.png", 4, 4)
    with pytest.raises(ValueError, match="classes.txt"):
        read(f"yolo:{tmp_path}", "all")


# ----------------------------------------------------------------------------- collate and transforms


def _sample(height: int, width: int, boxes: list[list[float]], labels: list[int], value: int = 255) -> dict:
    return {
        "image": torch.full((3, height, width), value, dtype=torch.uint8),
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "image_id": height,
        "path": f"{height}.png",
    }


def test_collate_pads_bottom_right_with_a_mask() -> None:
    a, b = _sample(20, 30, [[1, 2, 3, 4]], [2]), _sample(25, 10, [], [])
    batch = collate_detection([a, b], normalize_mean=[0.5, 0.5, 0.5], normalize_std=[0.25, 0.25, 0.25])
    assert batch["inputs"].shape == (2, 3, 25, 30) and batch["mask"].shape == (2, 25, 30)
    assert batch["mask"][0, :20, :30].all() and not batch["mask"][0, 20:].any()
    assert batch["mask"][1, :, :10].all() and not batch["mask"][1, :, 10:].any()
    assert torch.allclose(batch["inputs"][0, :, :20, :30], torch.tensor(2.0))  # (1.0 - 0.5) / 0.25
    assert (batch["inputs"][1, :, :, 10:] == 0).all()
    assert batch["image_sizes"].tolist() == [[20, 30], [25, 10]]
    assert torch.equal(batch["boxes"][0], a["boxes"]) and batch["boxes"][1].shape == (0, 4)
    assert [t.tolist() for t in batch["labels"]] == [[2], []] and batch["image_ids"].tolist() == [20, 25]


def _white_rectangle(height: int, width: int, box: list[int]) -> dict:
    sample = _sample(height, width, [box], [3], value=0)
    sample["image"][:, box[1]:box[3], box[0]:box[2]] = 255
    return sample


@pytest.mark.parametrize("config", [{"size": 48, "color_jitter": 0.0}, {"size": None, "color_jitter": 0.0}])
def test_train_transform_keeps_boxes_on_their_objects(config: dict) -> None:
    torch.manual_seed(0)
    transform = build_detection_transform(config, train=True)
    for _ in range(12):
        out = transform(_white_rectangle(40, 60, [8, 10, 30, 25]))
        white = out["image"].float().mean(0) > 127  # (H, W)
        if not len(out["boxes"]):
            assert not white.any()
            continue
        rows, cols = torch.nonzero(white.any(1)).flatten(), torch.nonzero(white.any(0)).flatten()
        x1, y1, x2, y2 = out["boxes"][0].tolist()
        assert abs(x1 - cols[0]) <= 1.5 and abs(y1 - rows[0]) <= 1.5
        assert abs(x2 - (cols[-1] + 1)) <= 1.5 and abs(y2 - (rows[-1] + 1)) <= 1.5
        assert out["labels"].tolist() == [3] and out["boxes"].dtype == torch.float32
    jitter = build_detection_transform({**config, "color_jitter": 0.4}, train=True)
    jittered = jitter(_white_rectangle(40, 60, [8, 10, 30, 25]))
    assert jittered["image"].dtype == torch.uint8 and jittered["labels"].tolist() == [3]


def test_eval_transform_resizes_and_keeps_every_box() -> None:
    sample = _white_rectangle(40, 80, [20, 8, 60, 32])
    sample["boxes"] = torch.tensor([[20.0, 8.0, 60.0, 32.0], [0.0, 0.0, 1.0, 1.0]])
    sample["labels"] = torch.tensor([3, 5])
    out = build_detection_transform({"size": 20}, train=False)(sample)
    assert out["image"].shape == (3, 20, 40) and out["image"].dtype == torch.uint8
    # the box that shrank to 0.5 px stays: evaluation never drops ground truth
    assert torch.allclose(out["boxes"], torch.tensor([[10.0, 4.0, 30.0, 16.0], [0.0, 0.0, 0.5, 0.5]]))
    assert out["labels"].tolist() == [3, 5] and out["image_id"] == 40
    trained = build_detection_transform({"size": 20, "scale_range": [1.0, 1.0], "hflip": 0.0, "color_jitter": 0.0},
                                        train=True)(sample)
    assert trained["labels"].tolist() == [3]  # training still drops boxes under min_box_size
    assert build_detection_transform(None, train=False)(sample)["image"].shape == (3, 40, 80)
    with pytest.raises(ValueError, match="sise"):
        build_detection_transform({"sise": 3}, train=True)
    json.dumps(build_detection_transform({"size": 20}, train=True).config)


# ----------------------------------------------------------------------------- built-in scenes


def _fake_fashion_mnist(workdir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Filled rectangles of varied sizes: item i's intensity encodes nothing, its label is i % 10."""
    rng = np.random.default_rng(0)
    parts = {}
    for part, count in (("train", 60), ("test", 40)):
        items = np.zeros((count, 28, 28), dtype=np.uint8)
        for item in items:
            top, left = rng.integers(0, 10, size=2)
            item[top:top + rng.integers(8, 18), left:left + rng.integers(8, 18)] = rng.integers(80, 256)
        parts[part] = (items, np.arange(count, dtype=np.int64) % 10)
    return parts


def test_generated_scenes_have_tight_boxes_and_disjoint_sources(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(builtin, "fashion_mnist", _fake_fashion_mnist)
    black = {name: Image.new("RGB", (200, 120)) for name in ("a.png", "b.png")}
    monkeypatch.setattr(builtin, "_load_backgrounds", lambda: black)
    recipe = builtin._Recipe(64, {"train": 16, "validation": 8, "test": 8}, (16, 40), seed=3)
    monkeypatch.setattr(builtin, "_RECIPES", {"small": recipe})
    TASK.prepare(["small"])
    assert "detection:small: 16/8/8 scenes of 64x64" in capsys.readouterr().out
    TASK.prepare(["small"])
    assert "already prepared" in capsys.readouterr().out

    sources, crops = {}, {}
    for split in BUILTIN_SPLITS:
        ds = read("builtin:small", split)
        assert len(ds) == {"train": 16, "validation": 8, "test": 8}[split]
        assert ds.classes == builtin.FASHION_MNIST_CLASSES and ds.skipped == ds.dropped_boxes == 0
        for sample in ds:
            item_pixels = sample["image"].amax(0) > 0  # (64, 64): the background is black
            covered = torch.zeros_like(item_pixels)
            assert 1 <= len(sample["boxes"]) <= 4
            for x1, y1, x2, y2 in sample["boxes"].int().tolist():
                covered[y1:y2, x1:x2] = True
                inside = item_pixels[y1:y2, x1:x2]
                assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            assert not (item_pixels & ~covered).any()
        coco = json.loads((data_root() / "detection" / "small" / split / "annotations.json").read_text())
        sources[split] = {(a["source"]["fashion_mnist"], a["source"]["index"]) for a in coco["annotations"]}
        assert all(a["category_id"] - 1 == a["source"]["index"] % 10 for a in coco["annotations"])
        crops[split] = [(i["background"]["file"], i["background"]["crop"]) for i in coco["images"]]
    assert {part for part, _ in sources["train"]} == {"train"}
    assert not sources["validation"] & sources["test"] and {p for p, _ in sources["test"]} == {"test"}
    for split, other in (("train", "validation"), ("train", "test"), ("validation", "test")):
        pairs = ((a, b) for a in crops[split] for b in crops[other])
        for (name_a, (xa, ya, sa, _)), (name_b, (xb, yb, sb, _)) in pairs:
            overlap = name_a == name_b and xa < xb + sb and xb < xa + sa and ya < yb + sb and yb < ya + sa
            assert not overlap, (split, other, name_a)


def test_builtin_backgrounds_are_bundled_files() -> None:
    backgrounds = builtin._load_backgrounds()
    assert set(backgrounds) == set(builtin._BACKGROUNDS)
    assert all(image.mode == "RGB" and min(image.size) >= 300 for image in backgrounds.values())


def test_builtin_errors_name_the_prepare_command() -> None:
    with pytest.raises(FileNotFoundError, match="zoo data prepare detection"):
        read("builtin", "train")
    with pytest.raises(ValueError, match="unknown built-in detection set"):
        read("builtin:huge", "train")
    with pytest.raises(ValueError, match="detection reads builtin, coco:PATH, voc:PATH, yolo:PATH"):
        read("csv:x.csv", "train")
    assert TASK.quick_set in TASK.builtin_sets and "default" in TASK.builtin_sets


# ----------------------------------------------------------------------------- bad data


@pytest.mark.parametrize("kind", sorted(TRICKY))
def test_detection_decodes_images_exactly_as_image_classification(tmp_path: Path, kind: str) -> None:
    name, write = TRICKY[kind]
    path, expected = write(tmp_path / name)
    coco = {"images": [{"id": 1, "file_name": name}], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    sample = read(f"coco:{_write_json(tmp_path / 'ann.json', coco)}", "all")[0]
    assert np.array_equal(sample["image"].permute(1, 2, 0).numpy(), expected)
    assert np.array_equal(read_image(path).permute(1, 2, 0).numpy(), np.array(load_image(path)))


@pytest.mark.filterwarnings("ignore:.*dropped 1 box")
def test_decompression_bomb_is_a_counted_skip_in_coco_and_an_error_in_predict(tmp_path: Path) -> None:
    coco = _coco(tmp_path)
    bomb_png(tmp_path / "images" / "b.png")
    path = _write_json(tmp_path / "ann.json", coco)
    with pytest.warns(UserWarning, match=r"b\.png: refused as a possible decompression bomb"):
        ds = read(f"coco:{path}", "all")
    assert (len(ds), ds.skipped) == (1, 1)
    with pytest.raises(ZooError, match=r"b\.png: refused as a possible decompression bomb"):
        read_image(tmp_path / "images" / "b.png")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda c: c["annotations"][0].update(iscrowd="0"), r"annotations\[0\]: field 'iscrowd' must be the integer 0"),
        (lambda c: c["annotations"][0].update(iscrowd=2), r"annotations\[0\]: field 'iscrowd' must be the integer 0"),
        (lambda c: c["annotations"][1].update(image_id=True), r"annotations\[1\]: field 'image_id' must be an integer"),
        (lambda c: c["annotations"][2].update(category_id="7"), r"annotations\[2\]: field 'category_id' must be an int"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, float("nan"), 4]), r"annotations\[0\]: field 'bbox' must"),
        (lambda c: c["images"][0].update(width="40"), r"images\[0\]: field 'width' must be a positive integer"),
        (lambda c: c["images"][1].update(height=-60), r"images\[1\]: field 'height' must be a positive integer"),
        (lambda c: c["images"][0].update(width=30, height=40),
         r"images\[0\]: declares 30x40 pixels \(width x height\), but .*a\.png is 40x30"),
    ],
)
def test_coco_field_types_and_declared_sizes_are_checked(tmp_path: Path, corrupt, message: str) -> None:
    coco = _coco(tmp_path)
    corrupt(coco)
    path = _write_json(tmp_path / "ann.json", coco)
    with pytest.raises(ZooError, match=f"ann.json: {message}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read(f"coco:{path}", "all")


def test_coco_declared_sizes_that_match_are_accepted(tmp_path: Path) -> None:
    coco = _coco(tmp_path)
    coco["images"][0].update(width=40, height=30)
    with pytest.warns(UserWarning, match="dropped 2 box"):
        assert len(read(f"coco:{_write_json(tmp_path / 'ann.json', coco)}", "all")) == 2


def test_yolo_coordinates_outside_0_1_are_skipped_and_counted_not_clamped(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "x.png", 40, 20)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n0 0.5 0.5 1.8 0.2\n0 -0.1 0.5 0.1 0.1\n")
    with pytest.warns(UserWarning, match=r"dropped 2 box\(es\) while reading \(first: .*x\.txt:2: normalised"):
        ds = read(f"yolo:{tmp_path}?classes=a", "all")
    assert ds.dropped_boxes == 2 and torch.equal(ds[0]["boxes"], torch.tensor([[10.0, 5.0, 30.0, 15.0]]))


@pytest.mark.parametrize("listing", ["voc", "yolo labels", "yolo classes"])
def test_non_utf8_listings_name_the_file_and_line(tmp_path: Path, listing: str) -> None:
    if listing == "voc":
        root = _voc(tmp_path)
        bad = root / "ImageSets" / "Main" / "train.txt"
        bad.parent.mkdir(parents=True)
        bad.write_bytes(b"one\ntw\xf6\n")
        (bad.parent / "val.txt").write_text("one\n")
        spec = f"voc:{root}"
    else:
        _png(tmp_path / "images" / "x.png", 40, 20)
        (tmp_path / "labels").mkdir()
        (tmp_path / "labels" / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
        bad = tmp_path / ("labels/x.txt" if listing == "yolo labels" else "classes.txt")
        (tmp_path / "classes.txt").write_text("car\n")
        bad.write_bytes(b"0 0.5 0.5 0.1 0.1\n\xf6\n" if listing == "yolo labels" else b"car\nb\xf6ke\n")
        spec = f"yolo:{tmp_path}"
    with pytest.raises(ZooError, match=rf"{bad}: not UTF-8 \(byte 0xf6 at line 2\); re-save it as UTF-8"):
        read(spec, "all")


def _brute_iou(a: list[int], b: list[int]) -> float:
    """IoU of two integer xyxy boxes from their pixel sets."""
    pixels_a = {(x, y) for x in range(a[0], a[2]) for y in range(a[1], a[3])}
    pixels_b = {(x, y) for x in range(b[0], b[2]) for y in range(b[1], b[3])}
    return len(pixels_a & pixels_b) / len(pixels_a | pixels_b)


def test_placement_gate_keeps_boxes_whose_iou_with_every_placed_box_is_at_most_the_limit() -> None:
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 20, size=(120, 2, 2))
    boxes = [[int(min(c[0])), int(min(c[1])), int(max(c[0])) + 1, int(max(c[1])) + 1] for c in corners]
    outcomes = []
    for box in boxes[:40]:
        placed = boxes[40 + int(rng.integers(0, 75)):][:3]
        outcomes.append(all(_brute_iou(box, other) <= builtin._MAX_IOU for other in placed))
        assert builtin._overlaps_little(box, placed) == outcomes[-1]
    assert 5 <= sum(outcomes) <= 35      # both answers were checked
    assert builtin._overlaps_little([0, 0, 4, 4], [])
    # IoU exactly 0.1 (2 of 20 pixels) passes, as with the exact fraction
    assert _brute_iou([0, 0, 11, 1], [9, 0, 20, 1]) == pytest.approx(0.1)
    assert builtin._overlaps_little([0, 0, 11, 1], [[9, 0, 20, 1]])
    assert not builtin._overlaps_little([0, 0, 11, 1], [[9, 0, 20, 1], [8, 0, 19, 1]])
