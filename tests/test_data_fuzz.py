"""Fuzz every data adapter of every task with malformed inputs written here.

Each adapter has a small valid source whose samples are written out by hand below. Every
case mutates it (bad encodings, truncation, empty files, line ends, wrong types, missing
fields, NaN and negative numbers, corrupt images and audio, symlink loops ...) and states
one outcome:

- ``Fails(name)``: a ``ZooError`` or ``FileNotFoundError`` whose one-line message names the file;
- ``Reads(values, skipped)``: the read (and a pass over every sample) gives exactly ``values``,
  with ``skipped`` damaged items counted (and each named in a warning).

Any other exception, an error that does not name the file, or different values fail the case.
"""
from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile
from PIL import Image

import zoo
from image_fixtures import TRICKY, bomb_png
from tasks.engine.sets import read_spec
from tasks.image_classification import formats as images
from tasks.image_classification.builtin import BUILTIN_SETS as IMAGE_SETS
from zoo import get_task
from zoo.errors import ZooError


pytestmark = pytest.mark.usefixtures("one_thread")
sentiment, text_generation, translation = (get_task(name) for name in ("sentiment", "text_generation", "translation"))


def image_read(spec: str, split: str) -> images.LabelledImages:
    """The image samples before ``in_memory`` decodes them (file paths kept)."""
    return read_spec("image_classification", spec, split, images.FORMATS, IMAGE_SETS)


# ---- outcomes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fails:
    """The read raises ZooError or FileNotFoundError naming ``name`` (a file or folder name)."""

    name: str


@dataclass(frozen=True)
class Reads:
    """The read gives exactly ``values`` with ``skipped`` damaged items, each named in a warning."""

    values: Any
    skipped: int = 0
    warned: tuple[str, ...] = ()


Outcome = Fails | Reads


def check(read: Callable[[], tuple[Any, int]], outcome: Outcome) -> None:
    """Run ``read`` (returns (values, skipped)) and hold it to ``outcome``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(outcome, Fails):
            with pytest.raises(Exception) as raised:
                read()
            error = raised.value
            assert isinstance(error, (ZooError, FileNotFoundError)), f"{type(error).__name__}: {error}"
            assert outcome.name in str(error), f"the message does not name {outcome.name}: {error}"
            assert "\n" not in str(error), f"not one line: {error!r}"
            return
        values, skipped = read()
    assert values == outcome.values
    assert skipped == outcome.skipped
    messages = " ".join(str(w.message) for w in caught)
    for name in outcome.warned:
        assert name in messages, f"no warning names {name}: {messages}"


# ---- what each task's datasets hold -----------------------------------------------------------------


def sentiment_values(dataset) -> tuple[list, int]:
    return [(s["text"], dataset.classes[s["label"]]) for s in dataset], dataset.skipped


def translation_values(dataset) -> tuple[list, int]:
    return [(s["source"], s["target"]) for s in dataset], dataset.skipped


def text_values(dataset) -> tuple[list, int]:
    return [s["text"] for s in dataset], dataset.skipped


def image_values(dataset) -> tuple[list, int]:
    """(file name, class, mean pixel) of every sample, after a pass that decodes each one."""
    items = [dataset[i] for i in range(len(dataset))]
    return [(Path(s["path"]).name, dataset.classes[s["label"]], int(np.asarray(s["image"]).mean()))
            for s in items], dataset.skipped


def detection_values(dataset) -> tuple[list, int]:
    """(file name, (H, W), boxes, class names) per sample, and (skipped images, dropped boxes)."""
    items = [dataset[i] for i in range(len(dataset))]
    values = [(Path(s["path"]).name, tuple(s["image"].shape[1:]), s["boxes"].tolist(),
               [dataset.classes[i] for i in s["labels"]]) for s in items]
    return values, (dataset.skipped, dataset.dropped_boxes)


def speech_values(dataset) -> tuple[list, int]:
    """(file name, transcript, samples at 16 kHz) per utterance, after loading each one."""
    items = [dataset[i] for i in range(len(dataset))]
    return [(Path(s["path"]).name, s["text"], int(s["audio"].shape[0])) for s in items], dataset.skipped


# ---- the adapters: a valid source each, and the file its text mutations change --------------------


@dataclass(frozen=True)
class TextSource:
    """A source with one text file to mutate.

    ``build(tmp)`` writes the valid source and returns (file to mutate, read). ``line`` is the
    line the mutations damage; ``values`` are the samples of the valid source. ``per_file``:
    a damaged file is a counted skip that loses ``lost`` samples, not an error.
    ``truncates``: cutting the file inside ``line`` must be an error. ``overrides`` replaces
    the outcome of named mutations where the format gives them a meaning.
    """

    build: Callable[[Path], tuple[Path, Callable[[], tuple[Any, int]]]]
    line: int
    values: Any
    per_file: bool = False
    lost: Any = None
    truncates: bool = True
    overrides: dict[str, Callable[[Path], Outcome]] = field(default_factory=dict)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _png(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> Path:
    """A gray PNG (width, height = size) filled with ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint8)).save(path)
    return path


def _wav(path: Path, seconds: float = 0.25, rate: int = 16000, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * rate))) / rate
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate, **kwargs)
    return path


REVIEWS = [("good film", "positive"), ("bad film", "negative"), ("fine film", "positive")]


def _sentiment_table(delimiter: str, fmt: str) -> Callable[[Path], tuple[Path, Callable]]:
    def build(tmp: Path) -> tuple[Path, Callable]:
        rows = "".join(f"{text}{delimiter}{label}\n" for text, label in REVIEWS)
        path = _write(tmp / f"reviews.{fmt}", f"text{delimiter}label\n" + rows)
        return path, lambda: sentiment_values(sentiment.datasets(f"{fmt}:{path}", "all"))
    return build


def _sentiment_jsonl(tmp: Path) -> tuple[Path, Callable]:
    path = _write(tmp / "reviews.jsonl", "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in REVIEWS))
    return path, lambda: sentiment_values(sentiment.datasets(f"jsonl:{path}", "all"))


def _sst2(tmp: Path) -> tuple[Path, Callable]:
    rows = "".join(f"{t}\t{int(l == 'positive')}\n" for t, l in REVIEWS)
    path = _write(tmp / "sst2.tsv", "sentence\tlabel\n" + rows)
    return path, lambda: sentiment_values(sentiment.datasets(f"sst2:{path}", "all"))


def _imdb(tmp: Path) -> tuple[Path, Callable]:
    _write(tmp / "imdb" / "neg" / "0_2.txt", "bad film")
    _write(tmp / "imdb" / "pos" / "1_9.txt", "good film")
    path = _write(tmp / "imdb" / "pos" / "2_8.txt", "fine film")
    return path, lambda: sentiment_values(sentiment.datasets(f"imdb:{tmp / 'imdb'}", "all"))


PAIRS = [("one", "uno"), ("two", "dos"), ("three", "tres")]


def _translation_tsv(tmp: Path) -> tuple[Path, Callable]:
    path = _write(tmp / "pairs.tsv", "".join(f"{s}\t{t}\n" for s, t in PAIRS))
    return path, lambda: translation_values(translation.datasets(f"tsv:{path}", "all"))


def _translation_jsonl(tmp: Path) -> tuple[Path, Callable]:
    path = _write(tmp / "pairs.jsonl", "".join(json.dumps({"src": s, "tgt": t}) + "\n" for s, t in PAIRS))
    return path, lambda: translation_values(translation.datasets(f"jsonl:{path}", "all"))


def _translation_pairs(side: int) -> Callable[[Path], tuple[Path, Callable]]:
    def build(tmp: Path) -> tuple[Path, Callable]:
        files = [_write(tmp / f"train.{lang}", "".join(p[k] + "\n" for p in PAIRS)) for k, lang in enumerate(("en", "es"))]
        return files[side], lambda: translation_values(translation.datasets(f"pairs:{files[0]},{files[1]}", "all"))
    return build


PARAGRAPHS = ["First part.", "Second part.", "Third part."]


def _text_file(tmp: Path) -> tuple[Path, Callable]:
    path = _write(tmp / "book.txt", "\n\n".join(PARAGRAPHS) + "\n")
    return path, lambda: text_values(text_generation.datasets(f"text:{path}", "all"))


def _text_folder(tmp: Path) -> tuple[Path, Callable]:
    for name, text in zip("abc", PARAGRAPHS):
        _write(tmp / "corpus" / f"{name}.txt", text + "\n")
    return tmp / "corpus" / "b.txt", lambda: text_values(text_generation.datasets(f"text:{tmp / 'corpus'}", "all"))


def _text_jsonl(tmp: Path) -> tuple[Path, Callable]:
    path = _write(tmp / "docs.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in PARAGRAPHS))
    return path, lambda: text_values(text_generation.datasets(f"jsonl:{path}", "all"))


IMAGE_ROWS = [("a.png", "cat", 10), ("b.png", "dog", 100), ("c.png", "cat", 200)]


def _image_csv(tmp: Path) -> tuple[Path, Callable]:
    for name, _, value in IMAGE_ROWS:
        _png(tmp / "img" / name, value)
    path = _write(tmp / "list.csv", "path,label\n" + "".join(f"img/{n},{c}\n" for n, c, _ in IMAGE_ROWS))
    return path, lambda: image_values(image_read(f"csv:{path}", "all"))


def _coco_dict(tmp: Path) -> dict:
    _png(tmp / "images" / "a.png", 50, (40, 30))
    _png(tmp / "images" / "b.png", 90, (20, 20))
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}, {"id": 2, "file_name": "b.png"}],
        "categories": [{"id": 4, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [2, 3, 10, 5]},
                        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [0, 0, 8, 8], "iscrowd": 0}],
    }


COCO_VALUES = ([("a.png", (30, 40), [[2.0, 3.0, 12.0, 8.0]], ["dog"]), ("b.png", (20, 20), [[0.0, 0.0, 8.0, 8.0]], ["cat"])],
               (0, 0))


def _coco_read(path: Path) -> Callable[[], tuple[Any, int]]:
    return lambda: detection_values(zoo.get_task("detection").datasets(f"coco:{path}", "all"))


def _coco(tmp: Path) -> tuple[Path, Callable]:
    path = _write(tmp / "ann.json", json.dumps(_coco_dict(tmp), indent=1))
    return path, _coco_read(path)


def _voc_xml(name: str, file_name: str, objects: list[tuple[str, tuple]]) -> str:
    body = "".join(f"\n <object>\n  <name>{n}</name>\n  <bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>\n </object>" for n, b in objects)
    return f"<annotation>\n <filename>{file_name}</filename>{body}\n</annotation>\n"


def _voc_folder(tmp: Path) -> Path:
    root = tmp / "voc"
    _png(root / "JPEGImages" / "one.png", 60, (30, 20))
    _png(root / "JPEGImages" / "two.png", 70, (10, 10))
    _write(root / "Annotations" / "one.xml", _voc_xml("one", "one.png", [("horse", (1, 1, 10, 20))]))
    _write(root / "Annotations" / "two.xml", _voc_xml("two", "two.png", [("person", (2, 3, 9, 9))]))
    _write(root / "ImageSets" / "Main" / "train.txt", "one\ntwo\n")
    _write(root / "ImageSets" / "Main" / "val.txt", "two\n")
    return root


VOC_VALUES = ([("one.png", (20, 30), [[0.0, 0.0, 10.0, 20.0]], ["horse"]),
               ("two.png", (10, 10), [[1.0, 2.0, 9.0, 9.0]], ["person"])], (0, 0))


def _voc_read(root: Path) -> Callable[[], tuple[Any, int]]:
    return lambda: detection_values(zoo.get_task("detection").datasets(f"voc:{root}", "all"))


def _voc_listing(tmp: Path) -> tuple[Path, Callable]:
    root = _voc_folder(tmp)
    return root / "ImageSets" / "Main" / "train.txt", _voc_read(root)


def _voc_annotation(tmp: Path) -> tuple[Path, Callable]:
    root = _voc_folder(tmp)
    return root / "Annotations" / "one.xml", _voc_read(root)


def _yolo_folder(tmp: Path) -> Path:
    root = tmp / "yolo"
    _png(root / "images" / "x.png", 40, (40, 20))
    _write(root / "labels" / "x.txt", "0 0.5 0.5 0.5 0.5\n1 0.25 0.5 0.25 0.5\n")
    _write(root / "classes.txt", "car\nbike\n")
    return root


YOLO_VALUES = ([("x.png", (20, 40), [[10.0, 5.0, 30.0, 15.0], [5.0, 5.0, 15.0, 15.0]], ["car", "bike"])], (0, 0))


def _yolo_read(root: Path) -> Callable[[], tuple[Any, int]]:
    return lambda: detection_values(zoo.get_task("detection").datasets(f"yolo:{root}", "all"))


def _yolo_labels(tmp: Path) -> tuple[Path, Callable]:
    root = _yolo_folder(tmp)
    return root / "labels" / "x.txt", _yolo_read(root)


def _yolo_classes(tmp: Path) -> tuple[Path, Callable]:
    root = _yolo_folder(tmp)
    return root / "classes.txt", _yolo_read(root)


UTTERANCES = [("a.wav", "hello there", 4000), ("b.wav", "good day", 4000), ("c.wav", "so long", 4000)]


def _clips(folder: Path) -> None:
    for name, _, _ in UTTERANCES:
        _wav(folder / name)


def _speech_read(spec: str) -> Callable[[], tuple[Any, int]]:
    return lambda: speech_values(zoo.get_task("asr").datasets(spec, "all"))


def _manifest_jsonl(tmp: Path) -> tuple[Path, Callable]:
    _clips(tmp)
    path = _write(tmp / "m.jsonl", "".join(json.dumps({"audio_filepath": n, "text": t, "duration": 0.25}) + "\n"
                                          for n, t, _ in UTTERANCES))
    return path, _speech_read(f"manifest:{path}")


def _manifest_csv(tmp: Path) -> tuple[Path, Callable]:
    _clips(tmp)
    path = _write(tmp / "m.csv", "audio_filepath,text,duration\n" + "".join(f"{n},{t},0.25\n" for n, t, _ in UTTERANCES))
    return path, _speech_read(f"manifest:{path}")


LIBRI = [("19-198-0000.flac", "hello there", 4000), ("19-198-0001.flac", "good day", 4000),
         ("19-198-0002.flac", "so long", 4000)]


def _librispeech(tmp: Path) -> tuple[Path, Callable]:
    folder = tmp / "libri" / "19" / "198"
    for name, _, _ in LIBRI:
        _wav(folder / name, format="FLAC")
    path = _write(folder / "19-198.trans.txt", "".join(f"{n[:-5]} {t.upper()}\n" for n, t, _ in LIBRI))
    return path, _speech_read(f"librispeech:{tmp / 'libri'}")


def _commonvoice(tmp: Path) -> tuple[Path, Callable]:
    _clips(tmp / "cv" / "clips")
    path = _write(tmp / "cv" / "train.tsv", "client_id\tpath\tsentence\n"
                  + "".join(f"x\t{n}\t{t.capitalize()}.\n" for n, t, _ in UTTERANCES))
    return path, _speech_read(f"commonvoice:{tmp / 'cv'}")


def _values_without(values: tuple[list, Any], index: int) -> tuple[list, Any]:
    return values[0][:index] + values[0][index + 1:], values[1]


SOURCES: dict[str, TextSource] = {
    "sentiment-csv": TextSource(_sentiment_table(",", "csv"), 3, (REVIEWS, 0)),
    "sentiment-tsv": TextSource(_sentiment_table("\t", "tsv"), 3, (REVIEWS, 0)),
    "sentiment-jsonl": TextSource(_sentiment_jsonl, 2, (REVIEWS, 0)),
    "sentiment-sst2": TextSource(_sst2, 3, (REVIEWS, 0)),
    "sentiment-imdb": TextSource(_imdb, 1, ([("bad film", "negative"), ("good film", "positive"),
                                             ("fine film", "positive")], 0), per_file=True,
                                 lost=([("bad film", "negative"), ("good film", "positive")], 1), truncates=False),
    "translation-tsv": TextSource(_translation_tsv, 2, (PAIRS, 0)),
    "translation-jsonl": TextSource(_translation_jsonl, 2, (PAIRS, 0)),
    "translation-pairs-source": TextSource(_translation_pairs(0), 2, (PAIRS, 0),
                                           overrides={"trailing-blank-lines": lambda f: Fails(f.name)}),
    "translation-pairs-target": TextSource(_translation_pairs(1), 2, (PAIRS, 0),
                                           overrides={"trailing-blank-lines": lambda f: Fails(f.name)}),
    "text-file": TextSource(_text_file, 3, (PARAGRAPHS, 0), truncates=False),
    "text-folder": TextSource(_text_folder, 1, (PARAGRAPHS, 0), per_file=True,
                              lost=([PARAGRAPHS[0], PARAGRAPHS[2]], 1), truncates=False),
    "text-jsonl": TextSource(_text_jsonl, 2, (PARAGRAPHS, 0)),
    "image-csv": TextSource(_image_csv, 3, (IMAGE_ROWS, 0)),
    "detection-coco": TextSource(_coco, 2, COCO_VALUES),
    "detection-voc-listing": TextSource(_voc_listing, 2, VOC_VALUES, overrides={
        "empty": lambda f: Reads(*VOC_VALUES), "blank-lines-only": lambda f: Reads(*VOC_VALUES)}),
    "detection-voc-xml": TextSource(_voc_annotation, 2, VOC_VALUES, overrides={   # XML tells UTF-16 by its first bytes
        "utf16-with-bom": lambda f: Reads(*VOC_VALUES), "utf16-without-bom": lambda f: Reads(*VOC_VALUES)}),
    "detection-yolo-labels": TextSource(_yolo_labels, 2, YOLO_VALUES, overrides={
        # an empty label file is an image without objects
        "empty": lambda f: Reads([("x.png", (20, 40), [], [])], (0, 0)),
        "blank-lines-only": lambda f: Reads([("x.png", (20, 40), [], [])], (0, 0))}),
    "detection-yolo-classes": TextSource(_yolo_classes, 2, YOLO_VALUES, truncates=False),
    "asr-manifest-jsonl": TextSource(_manifest_jsonl, 2, (UTTERANCES, 0)),
    "asr-manifest-csv": TextSource(_manifest_csv, 3, (UTTERANCES, 0)),
    "asr-librispeech": TextSource(_librispeech, 2, (LIBRI, 0)),
    "asr-commonvoice": TextSource(_commonvoice, 3, (UTTERANCES, 0)),
}


# ---- text mutations ---------------------------------------------------------------------------------


def _at_line(raw: bytes, line: int, insert: bytes) -> bytes:
    """``raw`` with ``insert`` put at the start of line ``line`` (1-based)."""
    lines = raw.split(b"\n")
    lines[line - 1] = insert + lines[line - 1]
    return b"\n".join(lines)


def _line_start(raw: bytes, line: int) -> int:
    """Offset of the first byte of line ``line`` (1-based)."""
    return sum(len(part) + 1 for part in raw.split(b"\n")[:line - 1])


def _cut_in_line(raw: bytes, line: int) -> bytes:
    """``raw`` up to the second byte of line ``line``."""
    lines = raw.split(b"\n")
    return b"\n".join(lines[:line - 1] + [lines[line - 1][:2]])


FAILING: dict[str, Callable[[bytes, int], bytes]] = {
    "invalid-utf8-byte": lambda raw, line: _at_line(raw, line, b"\xff"),
    "latin1-character": lambda raw, line: _at_line(raw, line, "é".encode("latin-1")),
    "utf16-with-bom": lambda raw, line: raw.decode("utf-8").encode("utf-16"),
    "utf16-without-bom": lambda raw, line: raw.decode("utf-8").encode("utf-16-le"),
    "nul-byte": lambda raw, line: _at_line(raw, line, b"\x00"),
    "binary-garbage": lambda raw, line: bytes(range(256)) * 3,
    "empty": lambda raw, line: b"",
    "blank-lines-only": lambda raw, line: b"\n  \n\t\n",
    "cut-inside-a-utf8-character": lambda raw, line: _at_line(raw, line, "é".encode())[:_line_start(raw, line) + 1],
}
READING: dict[str, Callable[[bytes, int], bytes]] = {
    "crlf-line-ends": lambda raw, line: raw.replace(b"\n", b"\r\n"),
    "bare-cr-line-ends": lambda raw, line: raw.replace(b"\n", b"\r"),
    "utf8-bom": lambda raw, line: b"\xef\xbb\xbf" + raw,
    "trailing-blank-lines": lambda raw, line: raw + b"\n\n \n",
}


def _text_cases() -> list:
    cases = []
    for source_name, source in SOURCES.items():
        mutations = {**FAILING, **READING}
        if source.truncates:
            mutations["cut-inside-a-line"] = lambda raw, line: _cut_in_line(raw, line)
        for mutation in mutations:
            cases.append(pytest.param(source_name, mutation, id=f"{source_name}/{mutation}"))
    return cases


@pytest.mark.parametrize("source_name, mutation", _text_cases())
def test_text_mutation(tmp_path: Path, source_name: str, mutation: str) -> None:
    source = SOURCES[source_name]
    target, read = source.build(tmp_path)
    mutate = {**FAILING, **READING, "cut-inside-a-line": _cut_in_line}[mutation]
    target.write_bytes(mutate(target.read_bytes(), source.line))
    if mutation in source.overrides:
        outcome = source.overrides[mutation](target)
    elif mutation in READING:
        outcome = Reads(*source.values)
    elif source.per_file:
        outcome = Reads(*source.lost, warned=(target.name,))
    else:
        outcome = Fails(target.name)
    check(read, outcome)


# ---- format-specific cases: wrong types, missing fields, numbers, damaged media ----------------------


def _json_lines(path: Path, rows: list) -> Path:
    return _write(path, "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


def _sentiment_cases() -> dict[str, Callable[[Path], tuple[Callable, Outcome]]]:
    def table(header: str, rows: list[str], options: str = "", fmt: str = "csv"):
        def case(tmp: Path):
            path = _write(tmp / f"r.{fmt}", "\n".join([header, *rows]) + "\n")
            return (lambda: sentiment_values(sentiment.datasets(f"{fmt}:{path}{options}", "all"))), Fails(path.name)
        return case

    def jsonl(rows: list, options: str = ""):
        def case(tmp: Path):
            path = _json_lines(tmp / "r.jsonl", [{"text": "fine", "label": 0}, *rows])
            return (lambda: sentiment_values(sentiment.datasets(f"jsonl:{path}{options}", "all"))), Fails(path.name)
        return case

    def read_table(content: str, expected: list, options: str = ""):
        def case(tmp: Path):
            path = _write(tmp / "r.csv", content)
            return (lambda: sentiment_values(sentiment.datasets(f"csv:{path}{options}", "all"))), Reads(expected)
        return case

    def imdb(layout: dict[str, str], outcome: Callable[[Path], Outcome]):
        def case(tmp: Path):
            for name, text in layout.items():
                _write(tmp / "imdb" / name, text)
            return (lambda: sentiment_values(sentiment.datasets(f"imdb:{tmp / 'imdb'}", "all"))), outcome(tmp / "imdb")
        return case

    return {
        "csv-header-only": table("text,label", []),
        "csv-missing-text-column": table("review,label", ["x,1"]),
        "csv-missing-label-column": table("text,stars", ["x,1"]),
        "csv-duplicate-column": table("text,text,label", ["a,b,1"]),
        "csv-extra-field": table("text,label", ["a,1", "b,0,extra"]),
        "csv-missing-field": table("text,label", ["a,1", "b"]),
        "csv-empty-text": table("text,label", ["a,1", " ,0"]),
        "csv-empty-label": table("text,label", ["a,1", "b, "]),
        "csv-stray-integer-label": table("text,label", ["a,0", "b,1", "c,0", "d,999999"]),
        "csv-negative-label": table("text,label", ["a,0", "b,-1"]),
        "csv-nan-among-integer-labels": table("text,label", ["a,0", "b,nan"]),
        "csv-float-among-integer-labels": table("text,label", ["a,0", "b,1.0"]),
        "csv-unknown-label-for-classes": table("text,label", ["a,good", "b,meh"], "?classes=bad,good"),
        "csv-id-out-of-range-for-classes": table("text,label", ["a,0", "b,2"], "?classes=bad,good"),
        "csv-unbalanced-quote": table("text,label", ['"a,1', "b,0"]),
        "csv-quote-inside-field": table("text,label", ['"a"b,1']),
        "tsv-missing-field": table("text\tlabel", ["a\t1", "b"], fmt="tsv"),
        "csv-quoted-comma-and-newline-read-right": read_table(
            'text,label\n"a, b",1\n"two\nlines",0\n', [("a, b", "1"), ("two\nlines", "0")]),
        "csv-integer-ids-within-classes-read-as-names": read_table(
            "text,label\na,0\nb,good\n", [("a", "bad"), ("b", "good")], "?classes=bad,good"),
        "jsonl-text-is-a-number": jsonl([{"text": 5, "label": 1}]),
        "jsonl-text-is-null": jsonl([{"text": None, "label": 1}]),
        "jsonl-label-is-a-list": jsonl([{"text": "a", "label": [1]}]),
        "jsonl-label-is-a-bool": jsonl([{"text": "a", "label": True}]),
        "jsonl-label-is-a-float": jsonl([{"text": "a", "label": 1.0}]),
        "jsonl-label-is-nan": jsonl(['{"text": "a", "label": NaN}']),
        "jsonl-label-is-null": jsonl([{"text": "a", "label": None}]),
        "jsonl-missing-label": jsonl([{"text": "a"}]),
        "jsonl-missing-text": jsonl([{"label": 1}]),
        "jsonl-not-an-object": jsonl([["a", 1]]),
        "jsonl-invalid-json": jsonl(['{"text": "a", "label": 1']),
        "jsonl-nul-in-text": jsonl([{"text": "a\u0000b", "label": 1}]),
        "jsonl-stray-integer-label": jsonl([{"text": "b", "label": 1}, {"text": "c", "label": 123456}]),
        "sst2-label-out-of-range": lambda tmp: (
            lambda p: ((lambda: sentiment_values(sentiment.datasets(f"sst2:{p}", "all"))), Fails(p.name)))(
            _write(tmp / "s.tsv", "sentence\tlabel\na\t1\nb\t2\n")),
        "imdb-missing-neg-folder": imdb({"pos/0_9.txt": "good"}, lambda root: Fails("neg")),
        "imdb-not-a-folder": lambda tmp: (
            (lambda: sentiment_values(sentiment.datasets(f"imdb:{_write(tmp / 'imdb.txt', 'x')}", "all"))),
            Fails("imdb.txt")),
        "imdb-all-files-empty": imdb({"neg/0_1.txt": " ", "pos/0_9.txt": "<br />"}, lambda root: Fails("imdb")),
        "missing-file": lambda tmp: ((lambda: sentiment.datasets(f"csv:{tmp / 'nope.csv'}", "all")), Fails("nope.csv")),
        "path-is-a-folder": lambda tmp: ((lambda: sentiment.datasets(f"csv:{tmp}", "all")), Fails(tmp.name)),
    }


def _translation_cases() -> dict[str, Callable[[Path], tuple[Callable, Outcome]]]:
    def tsv(lines: list[str]):
        def case(tmp: Path):
            path = _write(tmp / "p.tsv", "\n".join(lines) + "\n")
            return (lambda: translation_values(translation.datasets(f"tsv:{path}", "all"))), Fails(path.name)
        return case

    def jsonl(rows: list, options: str = ""):
        def case(tmp: Path):
            path = _json_lines(tmp / "p.jsonl", [{"src": "a", "tgt": "b"}, *rows])
            return (lambda: translation_values(translation.datasets(f"jsonl:{path}{options}", "all"))), Fails(path.name)
        return case

    def pairs(source: str, target: str, name: str):
        def case(tmp: Path):
            files = [_write(tmp / "s.en", source), _write(tmp / "t.es", target)]
            return (lambda: translation_values(translation.datasets(f"pairs:{files[0]},{files[1]}", "all"))), Fails(name)
        return case

    return {
        "tsv-no-tab": tsv(["a\tb", "c d"]),
        "tsv-two-tabs": tsv(["a\tb", "c\td\te"]),
        "tsv-empty-source": tsv(["a\tb", " \td"]),
        "tsv-empty-target": tsv(["a\tb", "c\t "]),
        "jsonl-missing-tgt": jsonl([{"src": "x"}]),
        "jsonl-tgt-is-a-number": jsonl([{"src": "x", "tgt": 3}]),
        "jsonl-src-is-null": jsonl([{"src": None, "tgt": "y"}]),
        "jsonl-src-is-a-list": jsonl([{"src": ["x"], "tgt": "y"}]),
        "jsonl-empty-string": jsonl([{"src": "", "tgt": "y"}]),
        "jsonl-not-an-object": jsonl(['"x"']),
        "jsonl-renamed-fields-missing": jsonl([], "?src=en&tgt=es"),
        "pairs-target-shorter": pairs("a\nb\nc\n", "x\ny\n", "t.es"),
        "pairs-source-shorter": pairs("a\n", "x\ny\n", "s.en"),
        "pairs-empty-line-in-target": pairs("a\nb\n", "x\n\n", "t.es"),
        "pairs-one-file-only": lambda tmp: (
            (lambda: translation.datasets(f"pairs:{_write(tmp / 's.en', 'a')}", "all")), Fails("s.en")),
        "pairs-missing-target": lambda tmp: (
            (lambda: translation.datasets(f"pairs:{_write(tmp / 's.en', 'a')},{tmp / 'gone.es'}", "all")), Fails("gone.es")),
        "tsv-missing-file": lambda tmp: ((lambda: translation.datasets(f"tsv:{tmp / 'nope.tsv'}", "all")), Fails("nope.tsv")),
        "tsv-unicode-line-separator-kept-inside-a-pair": lambda tmp: (
            (lambda p: (lambda: translation_values(translation.datasets(f"tsv:{p}", "all"))))(
                _write(tmp / "u.tsv", "a\u2028b\tc\nd\te\n")), Reads([("a\u2028b", "c"), ("d", "e")])),
    }


def _text_generation_cases() -> dict[str, Callable[[Path], tuple[Callable, Outcome]]]:
    def jsonl(rows: list, options: str = ""):
        def case(tmp: Path):
            path = _json_lines(tmp / "d.jsonl", [{"text": "fine"}, *rows])
            return (lambda: text_values(text_generation.datasets(f"jsonl:{path}{options}", "all"))), Fails(path.name)
        return case

    return {
        "jsonl-missing-field": jsonl([{"body": "x"}]),
        "jsonl-text-is-a-number": jsonl([{"text": 1}]),
        "jsonl-text-is-null": jsonl([{"text": None}]),
        "jsonl-empty-text": jsonl([{"text": "   "}]),
        "jsonl-not-an-object": jsonl(["[1, 2]"]),
        "jsonl-renamed-field-missing": jsonl([], "?field=body"),
        "jsonl-unknown-option": jsonl([], "?feild=text"),
        "text-unknown-sample-by": lambda tmp: (
            (lambda: text_generation.datasets(f"text:{_write(tmp / 'a.txt', 'x')}?sample_by=word", "all")), Fails("a.txt")),
        "text-missing-path": lambda tmp: ((lambda: text_generation.datasets(f"text:{tmp / 'gone'}", "all")), Fails("gone")),
        "text-folder-without-txt": lambda tmp: (
            (lambda: text_generation.datasets(f"text:{_write(tmp / 'f' / 'a.md', 'x').parent}", "all")), Fails("f")),
        "text-folder-all-damaged": lambda tmp: (
            (lambda folder: (lambda: text_generation.datasets(f"text:{folder}", "all")))(
                _write(tmp / "f" / "a.txt", bytes([0xff])).parent), Fails("f")),
    }


def _image_folder_case(damage: Callable[[Path], Path | None], skipped: int, extra: list | None = None):
    """A cat/dog folder of 3 good PNGs plus one damaged item written by ``damage`` into dog/."""
    def case(tmp: Path):
        root = tmp / "set"
        for name, label, value in IMAGE_ROWS:
            _png(root / label / name, value)
        damaged = damage(root / "dog")
        expected = sorted([(n, c, v) for n, c, v in IMAGE_ROWS] + (extra or []))
        warned = (damaged.name,) if damaged is not None and skipped else ()

        def read():
            values, count = image_values(image_read(f"imagefolder:{root}", "all"))
            return sorted(values), count
        return read, Reads(expected, skipped, warned)
    return case


def _truncated_jpeg(folder: Path) -> Path:
    path = folder / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:400])
    return path


def _image_cases() -> dict[str, Callable[[Path], tuple[Callable, Outcome]]]:
    def good_png_bytes(folder: Path) -> bytes:
        return _png(folder / "tmp.png", 5).read_bytes()

    def write(name: str, content: Callable[[Path], bytes]):
        def damage(folder: Path) -> Path:
            raw = content(folder)
            (folder / "tmp.png").unlink(missing_ok=True)
            return _write(folder / name, raw)
        return damage

    def csv_case(rows: list[str], header: str = "path,label", options: str = "", name: str = "list.csv"):
        def case(tmp: Path):
            for image, _, value in IMAGE_ROWS:
                _png(tmp / "img" / image, value)
            _write(tmp / "img" / "broken.png", b"\x89PNG\r\n\x1a\nnope")
            path = _write(tmp / "list.csv", "\n".join([header, *rows]) + "\n")
            return (lambda: image_values(image_read(f"csv:{path}{options}", "all"))), Fails(name)
        return case

    def arrays(images_: Any, labels: Any, classes: Any, named: str):
        return lambda tmp: ((lambda: images.from_arrays(images_, labels, classes)), Fails(named))

    def loop(folder: Path) -> None:
        os.symlink(folder.parent, folder / "loop")     # dog/loop -> set: every class again, forever
        os.symlink(folder / "b.png", folder / "z-same-as-b.png")  # sorts after b.png: the real name is kept
        return None

    def cifar(prepare: Callable[[Path], None], named: str):
        def case(tmp: Path):
            base = tmp / "cifar-10-batches-py"
            base.mkdir()
            for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
                with open(base / name, "wb") as f:
                    pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, f)
            with open(base / "batches.meta", "wb") as f:
                pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
            prepare(base)
            return (lambda: image_values(image_read(f"cifar10:{tmp}", "test"))), Fails(named)
        return case

    cases = {
        "folder-truncated-png": _image_folder_case(write("cut.png", lambda f: good_png_bytes(f)[:30]), 1),
        "folder-empty-file": _image_folder_case(write("empty.png", lambda f: b""), 1),
        "folder-text-file": _image_folder_case(write("notes.png", lambda f: b"just text\n"), 1),
        "folder-random-bytes": _image_folder_case(write("noise.jpg", lambda f: bytes(range(256))), 1),
        "folder-decompression-bomb": _image_folder_case(lambda f: bomb_png(f / "bomb.png"), 1),
        "folder-truncated-jpeg-found-at-decoding": _image_folder_case(_truncated_jpeg, 1),
        "folder-broken-symlink": _image_folder_case(
            lambda f: (os.symlink(f / "gone.png", f / "dangling.png"), f / "dangling.png")[1], 1),
        "folder-symlink-loop-reads-each-file-once": _image_folder_case(loop, 0),
        "folder-16-bit-gray-png": _image_folder_case(
            lambda f: (Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(f / "deep.png"), None)[1], 0,
            [("deep.png", "dog", round(40000 * 255 / 65535))]),
        "folder-no-class-folders": lambda tmp: (
            (lambda: image_read(f"imagefolder:{_png(tmp / 'flat' / 'a.png', 1).parent}", "all")), Fails("flat")),
        "folder-only-damaged-images": lambda tmp: (
            (lambda: image_read(f"imagefolder:{_write(tmp / 'bad' / 'c' / 'x.png', b'x').parent.parent}", "all")),
            Fails("bad")),
        "folder-missing": lambda tmp: ((lambda: image_read(f"imagefolder:{tmp / 'gone'}", "all")), Fails("gone")),
        "csv-missing-image-file": csv_case(["img/a.png,cat", "img/gone.png,dog"]),
        "csv-duplicate-column": csv_case(["img/a.png,img/b.png,cat"], header="path,path,label"),
        "csv-missing-label-column": csv_case(["img/a.png,cat"], header="path,kind"),
        "csv-empty-path": csv_case(["img/a.png,cat", ",dog"]),
        "csv-empty-label": csv_case(["img/a.png,cat", "img/b.png,"]),
        "csv-extra-field": csv_case(["img/a.png,cat,x"]),
        "csv-missing-field": csv_case(["img/a.png"]),
        "csv-unknown-class": csv_case(["img/a.png,cat", "img/b.png,cow"], options="?classes=cat,dog"),
        "csv-unbalanced-quote": csv_case(['img/a.png,"cat', "img/b.png,dog"]),
        "csv-header-only-damaged-image": csv_case(["img/broken.png,cat"]),
        "csv-damaged-image-is-a-counted-skip": lambda tmp: (
            lambda c: (c[0], Reads([("a.png", "cat", 10)], 1, ("broken.png",))))(
            csv_case(["img/a.png,cat", "img/broken.png,dog"])(tmp)),
        "cifar-unpublished-files": cifar(lambda base: None, "cifar-10-batches-py"),
        "cifar-truncated-batch": cifar(lambda base: (base / "test_batch").write_bytes(b"\x80\x04"), "cifar-10-batches-py"),
        "cifar-missing-meta": cifar(lambda base: (base / "batches.meta").unlink(), "batches.meta"),
        "cifar-missing-folder": lambda tmp: ((lambda: image_read(f"cifar10:{tmp / 'none'}", "test")),
                                             Fails("cifar-10-batches-py")),
        "arrays-float-images-with-nan": arrays(np.full((2, 4, 4), np.nan), [0, 1], ["a", "b"], "images"),
        "arrays-two-channels": arrays(np.zeros((2, 4, 4, 2), np.uint8), [0, 1], ["a", "b"], "images"),
        "arrays-flat-images": arrays(np.zeros((2, 16), np.uint8), [0, 1], ["a", "b"], "images"),
        "arrays-negative-label": arrays(np.zeros((2, 4, 4), np.uint8), [0, -1], ["a", "b"], "labels[1]"),
        "arrays-label-out-of-range": arrays(np.zeros((2, 4, 4), np.uint8), [0, 2], ["a", "b"], "labels[1]"),
        "arrays-float-labels": arrays(np.zeros((2, 4, 4), np.uint8), [0.0, 1.5], ["a", "b"], "labels"),
        "arrays-label-count": arrays(np.zeros((2, 4, 4), np.uint8), [0], ["a", "b"], "labels"),
        "arrays-duplicate-classes": arrays(np.zeros((2, 4, 4), np.uint8), [0, 1], ["a", "a"], "classes"),
    }
    for kind, (name, writer) in TRICKY.items():
        def mode_case(tmp: Path, name=name, writer=writer):
            path, expected = writer(_png(tmp / "set" / "only" / "x.png", 1).parent / name)
            (tmp / "set" / "only" / "x.png").unlink()
            read = lambda: image_values(image_read(f"imagefolder:{tmp / 'set'}", "all"))
            return read, Reads([(name, "only", int(expected.mean()))])
        cases[f"folder-mode-{kind}"] = mode_case
    return cases


def _detection_cases() -> dict[str, Callable[[Path], tuple[Callable, Outcome]]]:
    def coco(change: Callable[[dict, Path], None], outcome: Callable[[Path], Outcome] = lambda p: Fails(p.name)):
        def case(tmp: Path):
            content = _coco_dict(tmp)
            change(content, tmp)
            path = _write(tmp / "ann.json", json.dumps(content))
            return _coco_read(path), outcome(path)
        return case

    def annotation(**fields):
        return coco(lambda c, tmp: c["annotations"][0].update(fields))

    def voc(xml: str, outcome: Callable[[Path], Outcome] | None = None, options: str = ""):
        def case(tmp: Path):
            root = _voc_folder(tmp)
            path = _write(root / "Annotations" / "one.xml", xml)
            return (lambda: detection_values(zoo.get_task("detection").datasets(f"voc:{root}{options}", "all"))), (
                outcome(path) if outcome else Fails(path.name))
        return case

    def yolo(lines: str, outcome: Callable[[Path], Outcome] | None = None):
        def case(tmp: Path):
            root = _yolo_folder(tmp)
            path = _write(root / "labels" / "x.txt", lines)
            return _yolo_read(root), outcome(path) if outcome else Fails(path.name)
        return case

    def yolo_config(change: Callable[[Path], Path]):
        def case(tmp: Path):
            root = _yolo_folder(tmp)
            (root / "classes.txt").unlink()
            return _yolo_read(root), Fails(change(root).name)
        return case

    one_box = lambda boxes: Reads([("x.png", (20, 40), boxes, ["car"] * len(boxes))], (0, 0))
    first_out = [COCO_VALUES[0][0][:2] + ([], []), COCO_VALUES[0][1]]  # a.png without its box

    def bad_image(content: bytes | None):
        def change(c: dict, tmp: Path) -> None:
            target = tmp / "images" / "b.png"
            bomb_png(target) if content is None else target.write_bytes(content)
        return change

    return {
        "coco-top-level-list": coco(lambda c, tmp: c.clear()),
        "coco-images-not-a-list": coco(lambda c, tmp: c.update(images={"id": 1})),
        "coco-annotation-not-an-object": coco(lambda c, tmp: c["annotations"].append([1, 2])),
        "coco-missing-bbox": coco(lambda c, tmp: c["annotations"][0].pop("bbox")),
        "coco-missing-category-id": coco(lambda c, tmp: c["annotations"][0].pop("category_id")),
        "coco-bbox-three-numbers": annotation(bbox=[1, 2, 3]),
        "coco-bbox-string-number": annotation(bbox=[1, 2, "3", 4]),
        "coco-bbox-null": annotation(bbox=None),
        "coco-bbox-bool": annotation(bbox=[1, 2, True, 4]),
        "coco-bbox-nan": annotation(bbox=[1, 2, float("nan"), 4]),
        "coco-bbox-infinite": annotation(bbox=[1, 2, float("inf"), 4]),
        "coco-iscrowd-string": annotation(iscrowd="0"),
        "coco-iscrowd-true": annotation(iscrowd=True),
        "coco-iscrowd-two": annotation(iscrowd=2),
        "coco-image-id-true": annotation(image_id=True),
        "coco-image-id-string": annotation(image_id="1"),
        "coco-image-id-float": annotation(image_id=1.0),
        "coco-image-id-unknown": annotation(image_id=99),
        "coco-category-id-unknown": annotation(category_id=5),
        "coco-duplicate-image-id": coco(lambda c, tmp: c["images"].append({"id": 1, "file_name": "b.png"})),
        "coco-duplicate-category-id": coco(lambda c, tmp: c["categories"].append({"id": 4, "name": "fox"})),
        "coco-category-name-number": coco(lambda c, tmp: c["categories"][0].update(name=7)),
        "coco-file-name-missing": coco(lambda c, tmp: c["images"][0].pop("file_name")),
        "coco-file-name-number": coco(lambda c, tmp: c["images"][0].update(file_name=3)),
        "coco-width-string": coco(lambda c, tmp: c["images"][0].update(width="40")),
        "coco-height-zero": coco(lambda c, tmp: c["images"][0].update(height=0)),
        "coco-declared-size-differs": coco(lambda c, tmp: c["images"][0].update(width=30, height=40)),
        "coco-negative-width-box-dropped": coco(
            lambda c, tmp: c["annotations"][0].update(bbox=[2, 3, -10, 5]),
            lambda p: Reads(first_out, (0, 1))),
        "coco-box-outside-image-dropped": coco(
            lambda c, tmp: c["annotations"][0].update(bbox=[100, 100, 5, 5]),
            lambda p: Reads(first_out, (0, 1))),
        "coco-crowd-box-left-out": coco(
            lambda c, tmp: c["annotations"][0].update(iscrowd=1), lambda p: Reads(first_out, (0, 0))),
        "coco-missing-image-file-skipped": coco(
            lambda c, tmp: (tmp / "images" / "b.png").unlink(), lambda p: Reads(COCO_VALUES[0][:1], (1, 0))),
        "coco-corrupt-image-skipped": coco(bad_image(b"\x89PNG\r\n\x1a\nbroken"), lambda p: Reads(COCO_VALUES[0][:1], (1, 0))),
        "coco-decompression-bomb-skipped": coco(bad_image(None), lambda p: Reads(COCO_VALUES[0][:1], (1, 0))),
        "coco-every-image-missing": coco(lambda c, tmp: [(tmp / "images" / n).unlink() for n in ("a.png", "b.png")],
                                         lambda p: Fails("ann.json")),
        "coco-missing-file": lambda tmp: (_coco_read(tmp / "none.json"), Fails("none.json")),
        "voc-missing-bndbox": voc("<annotation><object><name>horse</name></object></annotation>"),
        "voc-missing-name": voc("<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>"),
        "voc-xmin-not-a-number": voc(_voc_xml("one", "one.png", [("horse", ("a", 1, 10, 20))])),
        "voc-xmin-nan": voc(_voc_xml("one", "one.png", [("horse", ("nan", 1, 10, 20))])),
        "voc-ymax-infinite": voc(_voc_xml("one", "one.png", [("horse", (1, 1, 10, "inf"))])),
        "voc-difficult-two": voc("<annotation><object><name>horse</name><difficult>2</difficult>"
                                 "<bndbox><xmin>1</xmin></bndbox></object></annotation>"),
        "voc-class-not-in-classes": voc(_voc_xml("one", "one.png", [("horse", (1, 1, 10, 20))]),
                                        options="?classes=person"),
        "voc-not-xml": voc("<annotation><object>"),
        "voc-missing-image-skipped": voc(_voc_xml("one", "gone.png", [("horse", (1, 1, 10, 20))]),
                                         lambda p: Reads(VOC_VALUES[0][1:], (1, 0))),
        "voc-listing-unknown-id": lambda tmp: (
            lambda root: (_voc_read(root), Fails("train.txt")))(
            (lambda root: (_write(root / "ImageSets" / "Main" / "train.txt", "one\nthree\n"), root)[1])(_voc_folder(tmp))),
        "voc-no-annotations": lambda tmp: (_voc_read(tmp / "empty"), Fails("empty")),
        "yolo-four-values": yolo("0 0.5 0.5 0.5\n"),
        "yolo-class-not-an-integer": yolo("0.0 0.5 0.5 0.5 0.5\n"),
        "yolo-class-out-of-range": yolo("2 0.5 0.5 0.5 0.5\n"),
        "yolo-negative-class": yolo("-1 0.5 0.5 0.5 0.5\n"),
        "yolo-nan-coordinate": yolo("0 nan 0.5 0.5 0.5\n"),
        "yolo-infinite-coordinate": yolo("0 0.5 0.5 inf 0.5\n"),
        "yolo-word-coordinate": yolo("0 0.5 half 0.5 0.5\n"),
        "yolo-width-1.8-skipped-not-clamped": yolo("0 0.5 0.5 0.5 0.5\n0 0.5 0.5 1.8 0.2\n",
                                                   lambda p: Reads(one_box([[10.0, 5.0, 30.0, 15.0]]).values, (0, 1),
                                                                   (f"{p.name}:2",))),
        "yolo-negative-centre-skipped": yolo("0 -0.2 0.5 0.1 0.1\n0 0.5 0.5 0.5 0.5\n",
                                             lambda p: Reads(one_box([[10.0, 5.0, 30.0, 15.0]]).values, (0, 1),
                                                             (f"{p.name}:1",))),
        "yolo-zero-width-dropped": yolo("0 0.5 0.5 0.0 0.5\n", lambda p: Reads(one_box([]).values, (0, 1))),
        "yolo-edge-past-the-border-clamped": yolo("0 0.9 0.5 0.4 0.5\n",
                                                  lambda p: Reads(one_box([[28.0, 5.0, 40.0, 15.0]]).values, (0, 0))),
        "yolo-no-images": lambda tmp: (_yolo_read(_write(tmp / "y" / "labels" / "x.txt", "").parent.parent), Fails("images")),
        "yolo-data-yaml-invalid": yolo_config(lambda root: _write(root / "data.yaml", "names: [a, b\n")),
        "yolo-data-yaml-names-not-a-list": yolo_config(lambda root: _write(root / "data.yaml", "names: car\n")),
        "yolo-data-yaml-not-utf8": yolo_config(lambda root: _write(root / "data.yaml", b"names: [caf\xe9]\n")),
        "yolo-no-class-names": yolo_config(lambda root: root),
    }


def _asr_cases() -> dict[str, Callable[[Path], tuple[Callable, Outcome]]]:
    def manifest(rows: list, named: str = "m.jsonl"):
        def case(tmp: Path):
            _clips(tmp)
            path = _json_lines(tmp / "m.jsonl", [{"audio_filepath": "a.wav", "text": "hello there"}, *rows])
            return _speech_read(f"manifest:{path}"), Fails(named)
        return case

    def csv_manifest(text: str):
        def case(tmp: Path):
            _clips(tmp)
            path = _write(tmp / "m.csv", text)
            return _speech_read(f"manifest:{path}"), Fails(path.name)
        return case

    def audio(write: Callable[[Path], Path], outcome: str):
        """A manifest of a.wav plus one damaged clip: 'skip' (counted at reading) or 'fail' (found at loading)."""
        def case(tmp: Path):
            _clips(tmp)
            clip = write(tmp)
            path = _json_lines(tmp / "m.jsonl", [{"audio_filepath": "a.wav", "text": "hello there"},
                                                 {"audio_filepath": clip.name, "text": "damaged"}])
            good = [("a.wav", "hello there", 4000)]
            return _speech_read(f"manifest:{path}"), (
                Reads(good, 1, (clip.name,)) if outcome == "skip" else Fails(clip.name))
        return case

    def raw_clip(name: str, content: bytes):
        return lambda tmp: _write(tmp / name, content)

    def nan_wav(tmp: Path) -> Path:
        wave = np.zeros(4000, np.float32)
        wave[100] = np.nan
        soundfile.write(str(tmp / "nan.wav"), wave, 16000, subtype="FLOAT")
        return tmp / "nan.wav"

    def truncated_flac(tmp: Path) -> Path:
        path = _wav(tmp / "cut.flac", seconds=1.0, format="FLAC")
        rng = np.random.default_rng(0)
        soundfile.write(str(path), rng.uniform(-0.5, 0.5, 16000).astype(np.float32), 16000, format="FLAC")
        path.write_bytes(path.read_bytes()[:2000])
        return path

    def header_only(tmp: Path) -> Path:
        path = _wav(tmp / "hdr.wav")
        path.write_bytes(path.read_bytes()[:44])
        return path

    def libri(transcript: str, named: str):
        def case(tmp: Path):
            folder = tmp / "libri" / "19" / "198"
            _wav(folder / "19-198-0000.flac", format="FLAC")
            _write(folder / "19-198.trans.txt", transcript)
            return _speech_read(f"librispeech:{tmp / 'libri'}"), Fails(named)
        return case

    def commonvoice(table: str, named: str = "train.tsv"):
        def case(tmp: Path):
            _clips(tmp / "cv" / "clips")
            _write(tmp / "cv" / "train.tsv", table)
            return _speech_read(f"commonvoice:{tmp / 'cv'}"), Fails(named)
        return case

    def unlabelled_flac(tmp: Path):
        folder = tmp / "libri" / "19" / "198"
        _wav(folder / "19-198-0000.flac", format="FLAC")
        _wav(folder / "19-198-0009.flac", format="FLAC")
        _write(folder / "19-198.trans.txt", "19-198-0000 HELLO\n")
        return _speech_read(f"librispeech:{tmp / 'libri'}"), Reads([("19-198-0000.flac", "hello", 4000)], 1,
                                                                  ("19-198-0009.flac",))

    return {
        "manifest-missing-audio-filepath": manifest([{"text": "x"}]),
        "manifest-missing-text": manifest([{"audio_filepath": "b.wav"}]),
        "manifest-text-is-a-number": manifest([{"audio_filepath": "b.wav", "text": 3}]),
        "manifest-text-is-null": manifest([{"audio_filepath": "b.wav", "text": None}]),
        "manifest-text-only-punctuation": manifest([{"audio_filepath": "b.wav", "text": " ... "}]),
        "manifest-audio-filepath-is-a-number": manifest([{"audio_filepath": 7, "text": "x"}]),
        "manifest-audio-filepath-empty": manifest([{"audio_filepath": " ", "text": "x"}]),
        "manifest-audio-missing": manifest([{"audio_filepath": "gone.wav", "text": "x"}]),
        "manifest-audio-is-a-folder": manifest([{"audio_filepath": ".", "text": "x"}]),
        "manifest-duration-nan": manifest(['{"audio_filepath": "b.wav", "text": "x", "duration": NaN}']),
        "manifest-duration-infinite": manifest(['{"audio_filepath": "b.wav", "text": "x", "duration": Infinity}']),
        "manifest-duration-negative": manifest([{"audio_filepath": "b.wav", "text": "x", "duration": -1}]),
        "manifest-duration-word": manifest([{"audio_filepath": "b.wav", "text": "x", "duration": "long"}]),
        "manifest-duration-bool": manifest([{"audio_filepath": "b.wav", "text": "x", "duration": True}]),
        "manifest-not-an-object": manifest(['["b.wav", "x"]']),
        "manifest-unknown-option": lambda tmp: (
            _speech_read(f"manifest:{_write(tmp / 'm.jsonl', '{}')}?lang=en"), Fails("m.jsonl")),
        "manifest-missing-file": lambda tmp: (_speech_read(f"manifest:{tmp / 'none.jsonl'}"), Fails("none.jsonl")),
        "csv-missing-text-column": csv_manifest("audio_filepath,words\na.wav,x\n"),
        "csv-duplicate-column": csv_manifest("audio_filepath,text,text\na.wav,x,y\n"),
        "csv-unbalanced-quote": csv_manifest('audio_filepath,text\na.wav,"hello\nb.wav,good day\nc.wav,so long\n'),
        "csv-extra-field": csv_manifest("audio_filepath,text\na.wav,x,y\n"),
        "csv-missing-field": csv_manifest("audio_filepath,text\na.wav\n"),
        "csv-header-only": csv_manifest("audio_filepath,text\n"),
        "audio-empty-file": audio(raw_clip("empty.wav", b""), "skip"),
        "audio-random-bytes": audio(raw_clip("noise.wav", bytes(range(256)) * 4), "skip"),
        "audio-text-file": audio(raw_clip("notes.flac", b"hello\n" * 50), "skip"),
        "audio-header-only-wav": audio(header_only, "skip"),
        "audio-10-ms-clip": audio(lambda tmp: _wav(tmp / "blip.wav", seconds=0.01), "skip"),
        "audio-one-sample": audio(lambda tmp: _wav(tmp / "one.wav", seconds=1 / 16000), "skip"),
        "audio-over-60-seconds": audio(lambda tmp: _wav(tmp / "long.wav", seconds=61, rate=1000), "skip"),
        "audio-nan-samples-found-at-loading": audio(nan_wav, "fail"),
        "audio-truncated-flac-found-at-loading": audio(truncated_flac, "fail"),
        "librispeech-line-without-text": libri("19-198-0000\n", "19-198.trans.txt"),
        "librispeech-audio-missing": libri("19-198-0001 HI\n", "19-198.trans.txt"),
        "librispeech-no-transcripts": lambda tmp: (
            _speech_read(f"librispeech:{_wav(tmp / 'l' / 'a.flac', format='FLAC').parent}"), Fails("l")),
        "librispeech-flac-without-a-line-is-a-counted-skip": unlabelled_flac,
        "commonvoice-missing-sentence-column": commonvoice("path\ttext\na.wav\tx\n"),
        "commonvoice-short-row": commonvoice("path\tsentence\ta\na.wav\tx\n"),
        "commonvoice-clip-missing": commonvoice("path\tsentence\ngone.wav\tx\n"),
        "commonvoice-header-only": commonvoice("path\tsentence\n"),
        "commonvoice-duplicate-column": commonvoice("path\tsentence\tpath\na.wav\tx\tb.wav\n"),
        "commonvoice-missing-table": lambda tmp: (
            _speech_read(f"commonvoice:{tmp}?split=dev"), Fails("dev.tsv")),
    }


SPECIFIC = {f"{task}/{name}": case for task, cases in (
    ("sentiment", _sentiment_cases()), ("translation", _translation_cases()),
    ("text_generation", _text_generation_cases()), ("image_classification", _image_cases()),
    ("detection", _detection_cases()), ("asr", _asr_cases())) for name, case in cases.items()}


@pytest.mark.parametrize("name", sorted(SPECIFIC))
def test_specific_case(tmp_path: Path, name: str) -> None:
    read, outcome = SPECIFIC[name](tmp_path)
    check(read, outcome)


def test_there_are_at_least_200_cases_over_every_adapter() -> None:
    ids = [f"text/{s}/{m}" for s, m in (p.values for p in _text_cases())] + list(SPECIFIC)
    assert len(ids) >= 200
    adapters = ["sentiment-csv", "sentiment-tsv", "sentiment-jsonl", "sentiment-sst2", "sentiment-imdb",
                "translation-tsv", "translation-jsonl", "translation-pairs", "text-file", "text-folder", "text-jsonl",
                "image-csv", "folder-", "cifar-", "arrays-", "detection-coco", "detection-voc", "detection-yolo",
                "asr-manifest-jsonl", "asr-manifest-csv", "asr-librispeech", "asr-commonvoice"]
    for adapter in adapters:
        assert any(adapter in case for case in ids), adapter
