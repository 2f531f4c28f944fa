"""Image classification data: adapters on fixtures written here, bad inputs, built-in digits, transforms."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from PIL import Image

from image_fixtures import TRICKY, bomb_png
import zoo
from tasks.engine import sources
from tasks.engine.images import load_image
from tasks.engine.sets import BUILTIN_SPLITS, read_spec
from tasks.image_classification import formats
from tasks.image_classification.builtin import BUILTIN_SETS
from tasks.image_classification.formats import FORMATS, align_classes, from_arrays
from tasks.image_classification.transforms import build_transform, default_transform_config, mixup_cutmix
from zoo.errors import ZooError

TASK = zoo.get_task("image_classification")


def read(spec: str, split: str) -> formats.LabelledImages:
    """The samples the task reads, before ``in_memory`` decodes them (``paths`` kept)."""
    return read_spec(TASK.name, spec, split, FORMATS, BUILTIN_SETS)

RNG = np.random.default_rng(0)


def _png(path: Path, value: int, size: tuple[int, int] = (6, 5)) -> Path:
    """A gray PNG filled with ``value`` (so the test can tell images apart after loading)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)
    return path


def _damaged_folder(root: Path) -> Path:
    """cat: 3 good, dog: 2 good + truncated, empty, text, bomb; plus a hidden file (ignored)."""
    for i in range(3):
        _png(root / "cat" / f"{i}.png", 10 + i)
    for i in range(2):
        _png(root / "dog" / f"{i}.png", 100 + i)
    good = (root / "dog" / "0.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.txt").write_text("not an image\n")
    bomb_png(root / "dog" / "bomb.png")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1")
    return root


def test_imagefolder_reads_classes_and_skips_damaged_files(tmp_path):
    root = _damaged_folder(tmp_path / "images")
    with pytest.warns(UserWarning) as caught:
        ds = read(f"imagefolder:{root}", "all")
    message = " ".join(str(w.message) for w in caught)
    for name in ("truncated.png", "empty.png", "notes.txt", "bomb.png"):
        assert name in message
    assert "decompression bomb" in message and ".DS_Store" not in message
    assert ds.classes == ["cat", "dog"] and ds.skipped == 4 and len(ds) == 5
    samples = [ds[i] for i in range(len(ds))]
    assert [s["label"] for s in samples] == [0, 0, 0, 1, 1]
    assert [s["image"].getpixel((0, 0)) for s in samples] == [(10,) * 3, (11,) * 3, (12,) * 3, (100,) * 3, (101,) * 3]
    assert all(s["image"].mode == "RGB" and s["image"].size == (5, 6) for s in samples)
    assert samples[3]["path"] == str(root / "dog" / "0.png")
    assert Image.MAX_IMAGE_PIXELS == 89478485  # Pillow's limit is never touched


def test_imagefolder_splits_are_seeded_and_disjoint(tmp_path):
    for i in range(40):
        _png(tmp_path / ("even" if i % 2 == 0 else "odd") / f"{i:02d}.png", i)
    spec = f"imagefolder:{tmp_path}"
    train, validation, test, everything = (read(spec, s) for s in ("train", "validation", "test", "all"))
    assert len(everything) == 40 and len(train) >= 30 and len(validation) >= 1 and len(test) >= 1
    assert sorted(train.paths + validation.paths + test.paths) == sorted(everything.paths)
    assert read(spec, "validation").paths == validation.paths
    assert all(int(Path(p).stem) % 2 == label for p, label in zip(everything.paths, everything.labels))


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        read(f"imagefolder:{tmp_path / 'missing'}", "all")
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no class sub-folders"):
        read(f"imagefolder:{tmp_path}", "all")
    with pytest.raises(ValueError, match="unknown option"):
        read(f"imagefolder:{tmp_path}?label=x", "all")
    with pytest.raises(ValueError, match="unknown format 'tfrecord'; image_classification reads builtin, imagefolder:PATH"):
        read(f"tfrecord:{tmp_path}", "all")


def test_numeric_class_folders_sort_as_numbers(tmp_path):
    for name in ("2", "10", "1"):
        _png(tmp_path / name / "a.png", int(name))
    assert read(f"imagefolder:{tmp_path}", "all").classes == ["1", "2", "10"]


def test_truncated_jpeg_is_caught_at_load_time(tmp_path):
    photo = tmp_path / "a" / "photo.jpg"
    photo.parent.mkdir()
    Image.fromarray(RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo, quality=90)
    photo.write_bytes(photo.read_bytes()[:2000])  # the header survives, so the cheap scan passes it
    _png(tmp_path / "a" / "z.png", 7)
    ds = read(f"imagefolder:{tmp_path}", "all")
    assert ds.skipped == 0 and len(ds) == 2
    with pytest.warns(UserWarning, match="photo.jpg"):
        sample = ds[0]
    assert sample["path"].endswith("z.png") and ds.skipped == 1


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ValueError, match="text.png: not a readable image"):
        load_image(tmp_path / "text.png")
    with pytest.raises(ValueError, match="bomb.png: refused"):
        load_image(bomb_png(tmp_path / "bomb.png"))


def test_load_image_puts_transparency_on_white(tmp_path):
    Image.new("RGBA", (3, 3), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((1, 1)) == (255, 255, 255)


def _csv(tmp_path: Path, rows: list[str], header: str = "path,label") -> Path:
    file = tmp_path / "list.csv"
    file.write_text("\n".join([header, *rows]) + "\n")
    return file


def test_csv_round_trip(tmp_path):
    _png(tmp_path / "img" / "a.png", 1)
    _png(tmp_path / "img" / "b.png", 2)
    _png(tmp_path / "img" / "c.png", 3)
    file = _csv(tmp_path, ["img/a.png,shoe", "img/b.png, bag", "img/c.png,shoe"])
    ds = read(f"csv:{file}", "all")
    assert ds.classes == ["bag", "shoe"] and list(ds.labels) == [1, 0, 1] and ds.skipped == 0
    assert ds[1]["image"].getpixel((0, 0)) == (2, 2, 2) and ds[1]["label"] == 0
    renamed = _csv(tmp_path, ["shoe,img/a.png"], header="kind,file")
    fixed = read(f"csv:{renamed}?path=file&label=kind&classes=shoe,bag", "all")
    assert fixed.classes == ["shoe", "bag"] and list(fixed.labels) == [0]


@pytest.mark.parametrize("rows, error, match", [
    (["img/a.png,shoe", "img/missing.png,shoe"], FileNotFoundError, r"list.csv:3: image file .*missing.png"),
    (["img/a.png,shoe", "img/a.png,"], ValueError, r"list.csv:3: empty 'label'"),
    (["img/a.png,shoe", ",shoe"], ValueError, r"list.csv:3: empty 'path'"),
    (["img/a.png,shoe,extra"], ValueError, r"list.csv:2: 3 fields, but the header \(line 1\) has 2"),
])
def test_csv_bad_lines_are_named(tmp_path, rows, error, match):
    _png(tmp_path / "img" / "a.png", 1)
    with pytest.raises(error, match=match):
        read(f"csv:{_csv(tmp_path, rows)}", "all")


def test_csv_bad_header_unknown_label_and_damaged_image(tmp_path):
    _png(tmp_path / "a.png", 1)
    with pytest.raises(ValueError, match=r"list.csv:1: no column 'label'"):
        read(f"csv:{_csv(tmp_path, ['a.png'], header='path')}", "all")
    with pytest.raises(ValueError, match=r"list.csv:2: unknown label 'hat'"):
        read(f"csv:{_csv(tmp_path, ['a.png,hat'])}?classes=shoe,bag", "all")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.warns(UserWarning, match=r"list.csv:3: .*bad.png"):
        ds = read(f"csv:{_csv(tmp_path, ['a.png,shoe', 'bad.png,shoe'])}", "all")
    assert len(ds) == 1 and ds.skipped == 1
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        read(f"csv:{tmp_path / 'nothing.csv'}", "all")


def _fake_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The python-pickle layout (5 train batches of 4 images, a test batch of 3); returns the test batch."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)

    def batch(name: str, n: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        images = RNG.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)  # rows of R, G, B planes
        labels = (np.arange(n) + start) % 10
        with open(base / name, "wb") as f:
            pickle.dump({"data": images, "labels": labels.tolist()}, f)
        return images, labels

    for k in range(1, 6):
        batch(f"data_batch_{k}", 4, k)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return batch("test_batch", 3, 0)


@pytest.fixture
def trust_fake_cifar(monkeypatch):
    """Stand in for the published checksums, which only the real CIFAR files match."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


def test_cifar10_folder(tmp_path, trust_fake_cifar):
    images, labels = _fake_cifar10(tmp_path)
    test = read(f"cifar10:{tmp_path}", "test")
    assert len(test) == 3 and test.classes == [f"c{i}" for i in range(10)]
    sample = test[2]
    expected = images[2].reshape(3, 32, 32).transpose(1, 2, 0)  # (32, 32, 3)
    assert np.array_equal(np.asarray(sample["image"]), expected) and sample["label"] == labels[2]
    train = read(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", "train")
    validation = read(f"cifar10:{tmp_path}", "validation")
    assert (len(train), len(validation)) == (19, 1)
    assert len(read(f"cifar10:{tmp_path}", "all")) == 3


def test_cifar100_folder(tmp_path, trust_fake_cifar):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    for name, n in (("train", 20), ("test", 5)):
        with open(base / name, "wb") as f:
            pickle.dump({"data": np.zeros((n, 3072), np.uint8), "fine_labels": [i % 100 for i in range(n)]}, f)
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)]}, f)
    test = read(f"cifar100:{tmp_path}", "test")
    assert len(test) == 5 and len(test.classes) == 100 and test[4]["label"] == 4


def test_cifar_refuses_unpublished_files_and_names_missing_ones(tmp_path):
    _fake_cifar10(tmp_path)
    with pytest.raises(ValueError, match="published cifar10 checksums"):
        read(f"cifar10:{tmp_path}", "test")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3 is missing"):
        read(f"cifar10:{tmp_path}", "test")


def test_from_arrays_and_align_classes():
    images = RNG.integers(0, 256, (4, 5, 6), dtype=np.uint8)
    ds = from_arrays(images, [0, 1, 1, 0], ["a", "b"])
    assert np.array_equal(np.asarray(ds[2]["image"])[:, :, 1], images[2]) and ds[2]["label"] == 1
    assert ds.skipped == 0 and ds.classes == ["a", "b"] and ds[3]["path"] == "arrays[3]"
    rgba = from_arrays(np.zeros((1, 2, 2, 4), np.uint8), [0], ["a"])
    assert rgba[0]["image"].getpixel((0, 0)) == (255, 255, 255)
    align_classes(ds, ["z", "b", "a"])
    assert list(ds.labels) == [2, 1, 1, 2] and ds.classes == ["z", "b", "a"]
    with pytest.raises(ValueError, match=r"\['a'\] are not among"):
        align_classes(from_arrays(images, [0, 1, 1, 0], ["a", "b"]), ["b"])


@pytest.mark.parametrize("images, labels, match", [
    (np.zeros((2, 4, 4), np.float32), [0, 1], "uint8"),
    (np.zeros((2, 4, 4, 2), np.uint8), [0, 1], "shape"),
    (np.zeros((2, 4, 4), np.uint8), [0], "2 integers"),
    (np.zeros((2, 4, 4), np.uint8), [0, 2], r"labels\[1\] = 2"),
])
def test_from_arrays_rejects_bad_input(images, labels, match):
    with pytest.raises(ValueError, match=match):
        from_arrays(images, labels, ["a", "b"])


def test_builtin_digits_prepare_and_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="zoo data prepare image_classification"):
        read("builtin:digits", "train")
    TASK.prepare([TASK.quick_set])
    assert capsys.readouterr().out.startswith("image_classification:digits: wrote 1,797 PNGs in ")
    TASK.prepare(["digits"])
    assert capsys.readouterr().out == f"image_classification:digits: already prepared in {tmp_path / TASK.name / 'digits'}\n"
    splits = {split: read("builtin:digits", split) for split in BUILTIN_SPLITS}
    assert [len(splits[s]) for s in BUILTIN_SPLITS] == [1437, 180, 180]
    numbers = [{Path(p).stem for p in splits[s].paths} for s in BUILTIN_SPLITS]
    assert not (numbers[0] & numbers[1] or numbers[0] & numbers[2] or numbers[1] & numbers[2])
    from sklearn.datasets import load_digits

    digits = load_digits()
    sample = splits["test"][7]
    k = int(Path(sample["path"]).stem)
    assert sample["label"] == digits.target[k] and splits["test"].classes[sample["label"]] == str(digits.target[k])
    expected = np.round(digits.images[k] * 255 / 16).astype(np.uint8)
    assert np.array_equal(np.asarray(sample["image"])[:, :, 0], expected)
    with pytest.raises(ValueError, match="unknown built-in image_classification set 'imagenet'"):
        read("builtin:imagenet", "train")
    with pytest.raises(ValueError, match="splits"):
        read("builtin:digits", "all")


def _idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 ``array`` as a gzipped IDX file (the MNIST format: magic, dimensions, bytes)."""
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 8, array.ndim, *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def fake_fashion_package(root: Path, counts: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A Debian dataset-fashion-mnist tree under ``root`` with ``counts`` random images per part."""
    folder = root / "usr/share/datasets/fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = rng.integers(0, 256, (counts[part], 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, counts[part], dtype=np.uint8)
        _idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        parts[part] = (images, labels)
    return parts


def test_fashion_mnist_source_reads_the_package_idx_files(tmp_path, monkeypatch):
    written = fake_fashion_package(tmp_path / "package", {"train": 5, "test": 3})
    monkeypatch.setattr(sources, "debian_package_root", lambda package, workdir: tmp_path / "package")
    (tmp_path / "work").mkdir()
    parts = sources.fashion_mnist(tmp_path / "work")
    for part, (images, labels) in written.items():
        assert parts[part][0].dtype == np.uint8 and np.array_equal(parts[part][0], images)
        assert parts[part][1].dtype == np.int64 and parts[part][1].tolist() == labels.tolist()
    (tmp_path / "package/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz: missing from the Debian package"):
        sources.fashion_mnist(tmp_path / "work")


def test_fashion_mnist_builtin_folders_hold_the_package_images(tmp_path, monkeypatch):
    written = fake_fashion_package(tmp_path / "package", {"train": 6, "test": 2})
    monkeypatch.setattr(sources, "debian_package_root", lambda package, workdir: tmp_path / "package")
    monkeypatch.setattr("tasks.image_classification.builtin.FASHION_VALIDATION", 2)
    assert BUILTIN_SETS["default"].build(tmp_path / "set") == "wrote 8 PNGs"
    assert sorted(p.name for p in (tmp_path / "set" / "train").iterdir())[0] == "Ankle boot"
    assert (tmp_path / "set" / "train" / "T-shirt_top").is_dir()
    for split, count in (("train", 4), ("validation", 2), ("test", 2)):
        dataset = BUILTIN_SETS["default"].read(tmp_path / "set", split)
        assert len(dataset) == count
        for sample in map(dataset.__getitem__, range(count)):
            number = int(Path(sample["path"]).stem)
            images, labels = written["test" if split == "test" else "train"]
            assert dataset.classes[sample["label"]] == sources.FASHION_MNIST_CLASSES[labels[number]].replace("/", "_")
            assert np.array_equal(np.asarray(sample["image"])[:, :, 0], images[number])


def test_transform_config_json_round_trip_gives_same_output():
    config = default_transform_config(28, [0.286], [0.353], grayscale_source=True)
    restored = json.loads(json.dumps(config))
    assert restored == config
    image = Image.fromarray(RNG.integers(0, 256, (30, 26, 3), dtype=np.uint8))
    for train in (True, False):
        torch.manual_seed(3)
        a = build_transform(config, train)(image)
        torch.manual_seed(3)
        b = build_transform(restored, train)(image)
        assert a.shape == (3, 28, 28) and a.dtype == torch.float32 and torch.equal(a, b)
    rand = dict(config, augment="rand")
    assert build_transform(rand, train=True)(image).shape == (3, 28, 28)


def test_eval_transform_normalises_and_crops():
    config = default_transform_config(224, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5])
    image = Image.new("RGB", (320, 256), (51, 102, 204))
    out = build_transform(config, train=False)(image)
    expected = (torch.tensor([51, 102, 204]) / 255 - torch.tensor([0.5, 0.4, 0.3])) / torch.tensor([0.2, 0.25, 0.5])
    assert out.shape == (3, 224, 224)
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-4) and torch.allclose(out.std(dim=(1, 2)), torch.zeros(3), atol=1e-4)


def test_grayscale_source_turns_colour_to_gray():
    config = default_transform_config(16, [0.5], [0.5], grayscale_source=True)
    out = build_transform(config, train=False)(Image.new("RGB", (16, 16), (255, 0, 0)))
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_train_transform_options_off_equal_eval():
    config = dict(default_transform_config(12), scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip=0.0, augment="none")
    image = Image.fromarray(RNG.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    assert torch.allclose(build_transform(config, True)(image), build_transform(config, False)(image))


def test_transform_config_errors():
    config = default_transform_config(28)
    with pytest.raises(ValueError, match="augment must be one of"):
        build_transform(dict(config, augment="auto"), train=True)
    with pytest.raises(ValueError, match=r"missing fields \['hflip'\]"):
        build_transform({k: v for k, v in config.items() if k != "hflip"}, train=True)


def test_mixup_cutmix_is_off_by_default_and_gives_soft_labels():
    config = default_transform_config(8)
    assert mixup_cutmix(config, num_classes=5) is None
    mix = mixup_cutmix(dict(config, mixup_alpha=0.2, cutmix_alpha=1.0), num_classes=5)
    images, labels = mix(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert images.shape == (4, 3, 8, 8) and labels.shape == (4, 5)
    assert torch.allclose(labels.sum(dim=1), torch.ones(4))


# ---- the shared decoder: awkward modes, link loops, CSV headers --------------------------------

@pytest.mark.parametrize("kind", sorted(TRICKY))
def test_awkward_modes_decode_to_the_right_rgb(tmp_path, kind):
    name, write = TRICKY[kind]
    path, expected = write(tmp_path / name)
    assert np.array_equal(np.array(load_image(path)), expected)
    folder = tmp_path / "set"
    (folder / "only").mkdir(parents=True)
    path.rename(folder / "only" / name)
    dataset = read(f"imagefolder:{folder}", "all")
    assert dataset.skipped == 0 and np.array_equal(np.array(dataset[0]["image"]), expected)


def test_symlink_loop_in_an_image_folder_reads_each_file_once(tmp_path):
    for i in range(2):
        _png(tmp_path / "set" / "cat" / f"{i}.png", 10 + i)
        _png(tmp_path / "set" / "dog" / "sub" / f"{i}.png", 100 + i)
    os.symlink("..", tmp_path / "set" / "dog" / "sub" / "up")          # dog/sub/up -> dog
    os.symlink(tmp_path / "set" / "cat", tmp_path / "set" / "cat" / "again")   # cat/again -> cat
    os.symlink(tmp_path / "set" / "cat" / "0.png", tmp_path / "set" / "cat" / "same.png")
    with pytest.warns(UserWarning, match="links to a folder already read"):
        dataset = read(f"imagefolder:{tmp_path / 'set'}", "all")
    assert len(dataset) == 4 and sorted(dataset.labels.tolist()) == [0, 0, 1, 1]
    assert sorted(dataset[i]["image"].getpixel((0, 0))[0] for i in range(4)) == [10, 11, 100, 101]


@pytest.mark.parametrize("text, message", [
    ("path,path,label\nimg/a.png,img/a.png,shoe\n", r"list.csv:1: the header names the column 'path' twice"),
    ('path,label\nimg/a.png,"shoe\nimg/a.png,bag"\n', r"list.csv:2: a field runs over 2 lines"),
    ("", r"list.csv: empty file"),
    (b"path,label\nimg/a.png,sho\xe9\n", r"list.csv: not UTF-8 \(byte 0xe9 at line 2\)"),
])
def test_csv_headers_quotes_and_encodings_are_named(tmp_path, text, message):
    _png(tmp_path / "img" / "a.png", 1)
    file = tmp_path / "list.csv"
    file.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ZooError, match=message):
        read(f"csv:{file}", "all")
