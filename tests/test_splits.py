"""Splits cannot leak: for every adapter of every task, train/validation/test are pairwise disjoint and
together are ``all``; a source's own lists are its splits, and one without a test list says so; the
hash split is stable under reordering and appends; the built-in sets' prepared splits share no sample."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile
from PIL import Image

import zoo
from tasks.asr import formats as asr_data
from tasks.detection import builtin as detection_builtin
from tasks.detection import formats as detection_data
from tasks.engine.data import THREE_WAY, TWO_WAY, hash_split, split_assignment, split_score
from tasks.engine.sets import read_spec
from tasks.image_classification import formats as image_data
from tasks.image_classification.builtin import BUILTIN_SETS as IMAGE_SETS
from tasks.sentiment import builtin as sentiment_builtin
from tasks.sentiment.formats import SentimentDataset
from tasks.text_generation import builtin as text_builtin
from tasks.text_generation.formats import TextDataset
from tasks.translation.formats import TranslationDataset
from zoo import get_task
from zoo.errors import ZooError
from zoo.storage import data_root

SENTIMENT, TRANSLATION, TEXT = (get_task(name) for name in ("sentiment", "translation", "text_generation"))

SPLITS = ("train", "validation", "test")
ASR, DETECTION, IMAGES = (zoo.get_task(name) for name in ("asr", "detection", "image_classification"))


def image_read(spec: str, split: str) -> image_data.LabelledImages:
    """The image samples before ``in_memory`` decodes them (file paths kept)."""
    return read_spec(IMAGES.name, spec, split, image_data.FORMATS, IMAGE_SETS)
N = 45  # samples per fixture; text fixtures repeat some of them


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _texts(n: int = N) -> list[str]:
    """n texts, the last few repeating earlier ones (a repeated sample must never straddle two splits)."""
    return [f"sample number {i % (n - 6)} is here" for i in range(n)]


def _png(path: Path, level: int, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), level % 256, dtype=np.uint8)).save(path)
    return path


def _wav(path: Path, i: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.full(1600 + 16 * i, 0.01, dtype=np.float32), 16000)
    return path


# ---- fixture writers: (tmp_path) -> SPEC ------------------------------------------------------

def sentiment_csv(root: Path) -> str:
    (root / "r.csv").write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(_texts())))
    return f"csv:{root / 'r.csv'}"


def sentiment_tsv(root: Path) -> str:
    (root / "r.tsv").write_text("text\tlabel\n" + "".join(f"{t}\tpos\n" for t in _texts()))
    return f"tsv:{root / 'r.tsv'}"


def sentiment_jsonl(root: Path) -> str:
    (root / "r.jsonl").write_text("".join(json.dumps({"text": t, "label": "neg"}) + "\n" for t in _texts()))
    return f"jsonl:{root / 'r.jsonl'}"


def sentiment_sst2(root: Path) -> str:
    (root / "sst2.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(_texts())))
    return f"sst2:{root / 'sst2.tsv'}"


def sentiment_imdb(root: Path) -> str:
    for i, text in enumerate(_texts()):
        folder = root / "imdb" / ("neg", "pos")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}_1.txt").write_text(text)
    return f"imdb:{root / 'imdb'}"


def translation_tsv(root: Path) -> str:
    (root / "p.tsv").write_text("".join(f"{t}\tcible {i}\n" for i, t in enumerate(_texts())))
    return f"tsv:{root / 'p.tsv'}"


def translation_jsonl(root: Path) -> str:
    (root / "p.jsonl").write_text("".join(json.dumps({"src": t, "tgt": f"cible {i}"}) + "\n"
                                          for i, t in enumerate(_texts())))
    return f"jsonl:{root / 'p.jsonl'}"


def translation_pairs(root: Path) -> str:
    (root / "p.en").write_text("".join(f"{t}\n" for t in _texts()))
    (root / "p.fr").write_text("".join(f"cible {i}\n" for i in range(N)))
    return f"pairs:{root / 'p.en'},{root / 'p.fr'}"


def text_file(root: Path) -> str:
    (root / "book.txt").write_text("\n\n".join(_texts()))
    return f"text:{root / 'book.txt'}"


def text_folder(root: Path) -> str:
    for i, text in enumerate(_texts()):
        (root / "docs" / f"part{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / "docs" / f"part{i % 3}" / f"{i:02d}.txt").write_text(text)
    return f"text:{root / 'docs'}"


def text_jsonl(root: Path) -> str:
    (root / "t.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in _texts()))
    return f"jsonl:{root / 't.jsonl'}?field=body"


def image_folder(root: Path) -> str:
    for i in range(N):
        _png(root / "images" / ("cat", "dog")[i % 2] / f"{i}.png", 10 * i)
    return f"imagefolder:{root / 'images'}"


def image_csv(root: Path) -> str:
    rows = [f"img/{i}.png,{('cat', 'dog')[i % 2]}" for i in range(N)]
    for i in range(N):
        _png(root / "img" / f"{i}.png", 10 * i)
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return f"csv:{root / 'labels.csv'}"


def asr_manifest(root: Path) -> str:
    rows = [{"audio_filepath": f"clips/{i}.wav", "text": f"utterance {i}"} for i in range(N)]
    for i in range(N):
        _wav(root / "clips" / f"{i}.wav", i)
    (root / "m.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return f"manifest:{root / 'm.jsonl'}"


def asr_manifest_csv(root: Path) -> str:
    for i in range(N):
        _wav(root / "clips" / f"{i}.wav", i)
    (root / "m.csv").write_text("audio_filepath,text\n" + "".join(f"clips/{i}.wav,word {i}\n" for i in range(N)))
    return f"manifest:{root / 'm.csv'}"


def asr_librispeech(root: Path) -> str:
    for speaker in range(3):
        chapter = root / "libri" / str(speaker) / "7"
        lines = []
        for k in range(N // 3):
            _wav(chapter / f"{speaker}-7-{k:04d}.flac", k)
            lines.append(f"{speaker}-7-{k:04d} WORD {k}")
        (chapter / f"{speaker}-7.trans.txt").write_text("\n".join(lines) + "\n")
    return f"librispeech:{root / 'libri'}"


def asr_commonvoice_table(root: Path) -> str:
    for i in range(N):
        _wav(root / "cv" / "clips" / f"{i}.wav", i)
    (root / "cv" / "other.tsv").write_text("path\tsentence\n" + "".join(f"{i}.wav\tsaid {i}\n" for i in range(N)))
    return f"commonvoice:{root / 'cv'}?split=other"


def detection_coco(root: Path) -> str:
    images = [{"id": i, "file_name": f"{i}.png"} for i in range(N)]
    for i in range(N):
        _png(root / "coco" / f"{i}.png", 5 * i, (16, 12))
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in range(N)]
    (root / "coco" / "ann.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "box"}]}))
    return f"coco:{root / 'coco' / 'ann.json'}"


def _voc(root: Path, names: list[str]) -> Path:
    for name in names:
        _png(root / "voc" / "JPEGImages" / f"{name}.png", len(name) * 9, (16, 12))
        (root / "voc" / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "voc" / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><object><name>box</name><bndbox><xmin>2</xmin>"
            "<ymin>2</ymin><xmax>6</xmax><ymax>6</ymax></bndbox></object></annotation>")
    return root / "voc"


def detection_voc(root: Path) -> str:
    return f"voc:{_voc(root, [f'im{i}' for i in range(N)])}"


def _yolo(root: Path, files: list[str]) -> Path:
    for file in files:
        _png(root / "yolo" / "images" / file, 7 * len(file), (16, 12))
        label = (root / "yolo" / "labels" / file).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "yolo" / "classes.txt").write_text("box\n")
    return root / "yolo"


def detection_yolo(root: Path) -> str:
    return f"yolo:{_yolo(root, [f'{i}.png' for i in range(N)])}"


# ---- what identifies a sample of each task's data sets -----------------------------------------

def _identities(dataset: Any) -> list[str]:
    """The samples of a data set as comparable strings: texts, source sentences, files."""
    if isinstance(dataset, SentimentDataset):
        return [s["text"] for s in dataset.samples]
    if isinstance(dataset, TranslationDataset):
        return [source for source, _ in dataset.pairs]
    if isinstance(dataset, TextDataset):
        return list(dataset.texts)
    if isinstance(dataset, image_data.ImageFiles):
        return list(dataset.paths)
    if isinstance(dataset, image_data.ImageArrays):
        return [image.tobytes().hex() for image in dataset.images]
    if isinstance(dataset, asr_data.SpeechDataset):
        return [str(entry.path) for entry in dataset.entries]
    if isinstance(dataset, detection_data.DetectionDataset):
        return [str(record.path) for record in dataset.records]
    raise TypeError(type(dataset))


ADAPTERS: list[tuple[Callable[[str, str], Any], Callable[[Path], str]]] = [
    (SENTIMENT.datasets, sentiment_csv), (SENTIMENT.datasets, sentiment_tsv), (SENTIMENT.datasets, sentiment_jsonl),
    (SENTIMENT.datasets, sentiment_sst2), (SENTIMENT.datasets, sentiment_imdb),
    (TRANSLATION.datasets, translation_tsv), (TRANSLATION.datasets, translation_jsonl),
    (TRANSLATION.datasets, translation_pairs),
    (TEXT.datasets, text_file), (TEXT.datasets, text_folder), (TEXT.datasets, text_jsonl),
    (image_read, image_folder), (image_read, image_csv),
    (ASR.datasets, asr_manifest), (ASR.datasets, asr_manifest_csv), (ASR.datasets, asr_librispeech),
    (ASR.datasets, asr_commonvoice_table),
    (DETECTION.datasets, detection_coco), (DETECTION.datasets, detection_voc), (DETECTION.datasets, detection_yolo),
]


def _assert_disjoint(parts: dict[str, list[str]]) -> None:
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        shared = set(parts[a]) & set(parts[b])
        assert not shared, f"{a} and {b} share {sorted(shared)[:3]}"


@pytest.mark.parametrize(("read", "write"), ADAPTERS, ids=[write.__name__ for _, write in ADAPTERS])
def test_user_splits_are_disjoint_and_cover_all(tmp_path: Path, read, write) -> None:
    spec = write(tmp_path)
    everything = _identities(read(spec, "all"))
    parts = {split: _identities(read(spec, split)) for split in SPLITS}
    _assert_disjoint(parts)
    assert sorted(parts["train"] + parts["validation"] + parts["test"]) == sorted(everything)
    assert len(parts["train"]) >= 0.7 * len(everything) and parts["validation"] and parts["test"]
    assert parts == {split: _identities(read(spec, split)) for split in SPLITS}  # seeded: the same every time


def test_a_user_file_split_survives_reordering_and_appending(tmp_path: Path) -> None:
    rows = [(f"review number {i}", i % 2) for i in range(200)]
    path = tmp_path / "r.csv"

    def splits_of(rows: list[tuple[str, int]]) -> dict[str, str]:
        path.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
        return {text: split for split in SPLITS for text in _identities(SENTIMENT.datasets(f"csv:{path}", split))}

    before = splits_of(rows)
    after = splits_of(rows[::-1] + [(f"new review {i}", 1) for i in range(100)])
    assert {text: after[text] for text in before} == before
    assert set(before.values()) == set(SPLITS)


def test_split_assignment_bands_fallback_and_duplicates() -> None:
    keys = [f"key {i}" for i in range(4000)]
    placed = split_assignment(keys)
    shares = {split: sum(v == split for v in placed.values()) / len(keys) for split in SPLITS}
    assert shares == pytest.approx(THREE_WAY, abs=0.015)
    assert all(placed[k] == ("train" if split_score(k) < 0.9 else "validation" if split_score(k) < 0.95 else "test")
               for k in keys)
    assert split_assignment(keys, seed=1) != placed  # the seed matters
    small = split_assignment(["a", "b", "c"])  # no key hashes into the held-out bands: the nearest are moved
    assert sorted(small.values()) == ["test", "train", "validation"]
    two = split_assignment(["a", "a", "b"], TWO_WAY)  # one entry per distinct key
    assert sorted(two) == ["a", "b"] and sorted(two.values()) == ["train", "validation"]
    assert split_assignment(["a"]) == {"a": "train"}  # train keeps at least one key
    samples = ["x", "y", "x", "z", "y", "w"]
    parts = {split: hash_split(samples, split, str, "fixture") for split in SPLITS}
    assert sorted(sum(parts.values(), [])) == sorted(samples)
    for value in ("x", "y"):  # both copies of a repeated sample land in one split
        assert sum(value in part for part in parts.values()) == 1


def test_split_errors_say_what_to_do() -> None:
    with pytest.raises(ZooError, match="fixture: its validation split is empty .*pass --split all"):
        hash_split(["only"], "validation", str, "fixture")
    with pytest.raises(ZooError, match="fixture has no test split; pass --split validation or all"):
        hash_split(["a", "b", "c"], "test", str, "fixture", fractions=TWO_WAY)
    with pytest.raises(ZooError, match="unknown split 'dev'"):
        hash_split(["a"], "dev", str, "fixture")


# ---- sources with their own lists ----------------------------------------------------------------

def test_voc_lists_are_the_splits_and_a_missing_test_list_is_an_error(tmp_path: Path) -> None:
    root = _voc(tmp_path, [f"im{i}" for i in range(12)])
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("".join(f"im{i}\n" for i in range(8)))
    spec = f"voc:{root}"
    parts = {split: _identities(DETECTION.datasets(spec, split)) for split in ("train", "validation")}
    _assert_disjoint({**parts, "test": []})
    listed = sorted(str(root / "JPEGImages" / f"im{i}.png") for i in range(8))
    assert sorted(parts["train"] + parts["validation"]) == listed  # validation carved out of the train list
    with pytest.raises(ZooError, match=r"voc:.* has no test split; pass --split validation or a test listing/file"):
        DETECTION.datasets(spec, "test")
    (main / "val.txt").write_text("im8\nim9\n")
    (main / "test.txt").write_text("im10\nim11\n")
    parts = {split: [Path(p).stem for p in _identities(DETECTION.datasets(spec, split))] for split in SPLITS}
    assert parts == {"train": [f"im{i}" for i in range(8)], "validation": ["im8", "im9"], "test": ["im10", "im11"]}


def test_yolo_with_only_a_test_folder_trains_on_everything_else(tmp_path: Path) -> None:
    root = _yolo(tmp_path, [f"{i}.png" for i in range(20)] + ["test/t0.png", "test/t1.png"])
    parts = {split: _identities(DETECTION.datasets(f"yolo:{root}", split)) for split in SPLITS}
    _assert_disjoint(parts)
    assert sorted(Path(p).name for p in parts["test"]) == ["t0.png", "t1.png"]
    assert sorted(parts["train"] + parts["validation"]) == sorted(str(root / "images" / f"{i}.png") for i in range(20))


def test_commonvoice_tables_are_the_splits(tmp_path: Path) -> None:
    root = tmp_path / "cv"
    tables = {"train": range(0, 10), "dev": range(10, 13), "test": range(13, 16)}
    for table, numbers in tables.items():
        for i in numbers:
            _wav(root / "clips" / f"{i}.wav", i)
        (root / f"{table}.tsv").write_text("path\tsentence\n" + "".join(f"{i}.wav\tsaid {i}\n" for i in numbers))
    names = {split: sorted(int(Path(p).stem) for p in _identities(ASR.datasets(f"commonvoice:{root}", split)))
             for split in SPLITS}
    assert names == {"train": list(range(10)), "validation": [10, 11, 12], "test": [13, 14, 15]}
    assert len(ASR.datasets(f"commonvoice:{root}", "all")) == 16
    (root / "dev.tsv").write_text("path\tsentence\n0.wav\tsaid 0\n")
    with pytest.raises(ZooError, match=r"'clips/0.wav' is in both its train and validation lists"):
        ASR.datasets(f"commonvoice:{root}", "test")


def test_cifar_validation_is_carved_from_the_official_train_batches(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    batches = {True: rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8),
               False: rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)}
    batches[True][59] = batches[True][3]  # a repeated image: one split only

    class FakeCifar:
        base_folder = "fake-batches-py"
        train_list, test_list, meta = [["data_batch_1", ""]], [["test_batch", ""]], {"filename": "batches.meta"}

        def __init__(self, root: str, train: bool, download: bool) -> None:
            self.data, self.classes = batches[train], ["a", "b"]
            self.targets = [i % 2 for i in range(len(self.data))]

    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (tmp_path / FakeCifar.base_folder).mkdir(exist_ok=True)
        (tmp_path / FakeCifar.base_folder / name).write_bytes(b"")
    monkeypatch.setitem(image_data._CIFAR, "cifar10", FakeCifar)
    parts = {split: _identities(image_read(f"cifar10:{tmp_path}", split)) for split in SPLITS}
    _assert_disjoint(parts)
    assert sorted(parts["train"] + parts["validation"]) == sorted(image.tobytes().hex() for image in batches[True])
    assert parts["test"] == [image.tobytes().hex() for image in batches[False]]


# ---- the built-in sets' prepared splits -----------------------------------------------------------

def _builtin_parts(read: Callable[[str, str], Any], spec: str) -> dict[str, list[str]]:
    parts = {split: _identities(read(spec, split)) for split in SPLITS}
    assert all(parts.values())
    _assert_disjoint(parts)
    return parts


def test_builtin_sentiment_splits_share_no_sentence(monkeypatch) -> None:
    lines = [f"{n}\t{2.0 if n % 3 else -2.0}\tsentence {n % 50}." for n in range(80)]  # 30 repeated sentences
    monkeypatch.setattr(sentiment_builtin, "_download_ground_truth",
                        lambda workdir: ("\r\n".join(lines).encode(), "fixture"))
    SENTIMENT.prepare()
    parts = _builtin_parts(SENTIMENT.datasets, "builtin")
    assert sorted(sum(parts.values(), [])) == sorted(f"sentence {n}." for n in range(50))


def test_builtin_translation_numbers_splits_share_no_source() -> None:
    TRANSLATION.prepare(["numbers"])
    parts = _builtin_parts(TRANSLATION.datasets, "builtin:numbers")
    assert len(set(sum(parts.values(), []))) == 12_000


def test_builtin_fortunes_splits_share_no_quote(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "deb" / "usr/share/games/fortunes"
    folder.mkdir(parents=True)
    quotes = [f"Fortune {i}." for i in range(50)]
    (folder / "one").write_text("\n%\n".join(quotes[:30]) + "\n%\n")
    (folder / "two").write_text("\n%\n".join(quotes[20:]) + "\n%\n")  # 10 quotes in both files
    monkeypatch.setattr(text_builtin, "debian_package_root", lambda package, workdir: tmp_path / "deb")
    TEXT.prepare(["fortunes"])
    parts = _builtin_parts(TEXT.datasets, "builtin:fortunes")
    assert sorted(sum(parts.values(), [])) == sorted(quotes)


def test_builtin_digits_splits_share_no_image() -> None:
    IMAGES.prepare(["digits"])
    parts = {split: image_read("builtin:digits", split) for split in SPLITS}
    pixels = {split: [np.asarray(Image.open(p)).tobytes() for p in ds.paths] for split, ds in parts.items()}
    _assert_disjoint(pixels)
    assert sum(map(len, pixels.values())) == 1797


def test_builtin_detection_splits_share_no_scene_or_item(monkeypatch) -> None:
    rng = np.random.default_rng(0)

    def fashion(workdir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        counts = {"train": 40, "test": 30}
        return {part: (rng.integers(0, 255, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10) for part, n in counts.items()}

    monkeypatch.setattr(detection_builtin, "fashion_mnist", fashion)
    monkeypatch.setattr(detection_builtin, "_load_backgrounds",
                        lambda: {"a.png": Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8))})
    recipe = detection_builtin._Recipe(48, {"train": 8, "validation": 4, "test": 4}, (12, 30), seed=0)
    monkeypatch.setattr(detection_builtin, "_RECIPES", {"small": recipe})
    DETECTION.prepare(["small"])
    scenes = {split: [s["image"].numpy().tobytes() for s in DETECTION.datasets("builtin:small", split)]
              for split in SPLITS}
    _assert_disjoint(scenes)
    folder = data_root() / "detection" / "small"
    coco = {split: json.loads((folder / split / "annotations.json").read_text()) for split in SPLITS}
    items = {split: [json.dumps(a["source"]) for a in coco[split]["annotations"]] for split in SPLITS}  # Fashion-MNIST items
    _assert_disjoint(items)
