"""Text generation data: the text/jsonl adapters, block packing and both built-in sets on fixtures."""
from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import rdata
import torch

from tasks.engine import sources
from tasks.engine.rdata import read_r_lazyload
from tasks.engine.sets import BUILTIN_SPLITS
from tasks.text_generation import builtin
from tasks.text_generation.blocks import pack_blocks
from zoo import get_task

TASK = get_task("text_generation")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def texts(dataset) -> list[str]:
    return [dataset[i]["text"] for i in range(len(dataset))]


# ---- text: --------------------------------------------------------------------------------

def test_text_file_is_cut_into_paragraphs_lines_or_one_document(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_bytes("\ufeffFirst line\r\nstill first.\r\n\r\n  \r\nSecond.\n\n\nThird.\n".encode())
    assert texts(TASK.datasets(f"text:{path}", "all")) == ["First line\nstill first.", "Second.", "Third."]
    assert texts(TASK.datasets(f"text:{path}?sample_by=line", "all")) == ["First line", "still first.", "Second.", "Third."]
    assert texts(TASK.datasets(f"text:{path}?sample_by=document", "all")) == [
        "First line\nstill first.\n\n  \nSecond.\n\n\nThird."]


def test_text_folder_is_recursive_sorted_and_skips_damaged_files(tmp_path: Path) -> None:
    (tmp_path / "corpus" / "b").mkdir(parents=True)
    (tmp_path / "corpus" / "b" / "two.txt").write_text("Two.\n\nStill two.")
    (tmp_path / "corpus" / "a.txt").write_text("One.")
    (tmp_path / "corpus" / "notes.md").write_text("not text data")
    (tmp_path / "corpus" / "empty.txt").write_text(" \n")
    (tmp_path / "corpus" / "latin1.txt").write_bytes("ok\ncaf\xe9".encode("latin-1"))
    with pytest.warns(UserWarning) as caught:
        dataset = TASK.datasets(f"text:{tmp_path / 'corpus'}", "all")
    assert texts(dataset) == ["One.", "Two.\n\nStill two."]
    assert dataset.skipped == 2
    messages = " ".join(str(w.message) for w in caught)
    assert "empty.txt: empty text" in messages and "latin1.txt: not UTF-8 (byte 0xe9 at line 2)" in messages


def test_text_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nfine\n\xff broken\n")
    with pytest.raises(ValueError, match=r"bad\.txt: not UTF-8 \(byte 0x[0-9a-f]{2} at line 3\)"):
        TASK.datasets(f"text:{bad}", "all")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty\.txt: empty text"):
        TASK.datasets(f"text:{empty}", "all")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        TASK.datasets(f"text:{tmp_path / 'missing.txt'}", "all")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="nothing: no .txt files"):
        TASK.datasets(f"text:{tmp_path / 'nothing'}", "all")
    with pytest.raises(ValueError, match="sample_by='chapter'"):
        TASK.datasets(f"text:{bad}?sample_by=chapter", "all")


def test_user_splits_are_a_seeded_disjoint_hold_out(tmp_path: Path) -> None:
    path = tmp_path / "many.txt"
    path.write_text("\n\n".join(f"Paragraph {i}." for i in range(100)))
    train, validation, test = (texts(TASK.datasets(f"text:{path}", split)) for split in ("train", "validation", "test"))
    assert 80 <= len(train) <= 98 and validation and test
    assert sorted(train + validation + test) == sorted(texts(TASK.datasets(f"text:{path}", "all")))
    assert validation == texts(TASK.datasets(f"text:{path}", "validation"))


# ---- jsonl: -------------------------------------------------------------------------------

def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_reads_the_default_and_a_named_field(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "d.jsonl", [{"text": "alpha", "id": 1}, {"text": "beta\ngamma", "id": 2}])
    dataset = TASK.datasets(f"jsonl:{path}", "all")
    assert texts(dataset) == ["alpha", "beta\ngamma"] and dataset.skipped == 0
    path = write_rows(tmp_path / "e.jsonl", [{"body": "one"}, {"body": "two"}])
    assert texts(TASK.datasets(f"jsonl:{path}?field=body", "all")) == ["one", "two"]


@pytest.mark.parametrize("rows, message", [
    ([{"text": "ok"}, {"body": "no text"}], r"d\.jsonl:2: no field 'text' \(fields: body\)"),
    ([{"text": "ok"}, {"text": "ok"}, {"text": "  \n"}], r"d\.jsonl:3: empty 'text' field"),
    ([{"text": 7}], r"d\.jsonl:1: field 'text' holds int"),
    ([], r"d\.jsonl: no records"),
])
def test_jsonl_errors_name_the_file_and_line(tmp_path: Path, rows: list, message: str) -> None:
    path = write_rows(tmp_path / "d.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        TASK.datasets(f"jsonl:{path}", "all")


def test_jsonl_malformed_line_missing_file_and_unknown_option(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"d\.jsonl:2: not valid JSON"):
        TASK.datasets(f"jsonl:{path}", "all")
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        TASK.datasets(f"jsonl:{tmp_path / 'nope.jsonl'}", "all")
    with pytest.raises(ValueError, match="unknown option.*feild"):
        TASK.datasets(f"jsonl:{path}?feild=text", "all")
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        TASK.datasets(f"csv:{path}", "all")


# ---- packing ------------------------------------------------------------------------------

def test_pack_blocks_values_shift_and_dropped_tail() -> None:
    blocks = pack_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=4, eos_id=0)
    # stream: 1 2 3 0 4 5 0 6 7 8 9 0 (12 tokens) -> (12 - 1) // 4 = 2 blocks of 5, sharing one token
    assert blocks.dtype == torch.long and blocks.shape == (2, 5)
    assert blocks.tolist() == [[1, 2, 3, 0, 4], [4, 5, 0, 6, 7]]
    inputs, targets = blocks[:, :-1], blocks[:, 1:]
    assert torch.equal(inputs[1:, 0], targets[:-1, -1])   # every token is a target exactly once


def test_pack_blocks_exact_fit_and_too_few_tokens() -> None:
    assert pack_blocks([[5, 6, 7]], block_size=3, eos_id=1).tolist() == [[5, 6, 7, 1]]
    with pytest.raises(ValueError, match="too few tokens.*2 documents give 5 tokens.*needs 9"):
        pack_blocks([[5], [6, 7]], block_size=8, eos_id=1)


# ---- built-in sets ------------------------------------------------------------------------

def fake_package(monkeypatch: pytest.MonkeyPatch, root: Path) -> list[str]:
    fetched: list[str] = []

    def package_root(package: str, workdir: Path) -> Path:
        fetched.append(package)
        return root
    monkeypatch.setattr(builtin, "debian_package_root", package_root)     # the fortunes
    monkeypatch.setattr(sources, "debian_package_root", package_root)     # Austen's novels
    return fetched


def test_fortunes_prepare_split_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "deb" / "usr/share/games/fortunes"
    folder.mkdir(parents=True)
    quotes = [f"Quote number {i}.\n\t\t-- Someone {i}" for i in range(60)]
    (folder / "wisdom").write_text("\n%\n".join(quotes[:40]) + "\n%\n")
    (folder / "science").write_text("%\n".join(q + "\n" for q in quotes[40:] + [quotes[0]]))   # a duplicate
    (folder / "wisdom.dat").write_bytes(b"\x00\x02binary index")
    (folder / "wisdom.u8").symlink_to("wisdom")
    fetched = fake_package(monkeypatch, tmp_path / "deb")
    with pytest.raises(FileNotFoundError, match="zoo data prepare text_generation"):
        TASK.datasets("builtin:fortunes", "train")
    TASK.prepare(["fortunes"])
    assert "60 quotes" in capsys.readouterr().out and fetched == ["fortunes"]
    split = {s: texts(TASK.datasets("builtin:fortunes", s)) for s in BUILTIN_SPLITS}
    assert [len(split[s]) for s in BUILTIN_SPLITS] == [54, 3, 3]
    assert sorted(sum(split.values(), [])) == sorted(quotes)
    TASK.prepare(["fortunes"])
    assert "already prepared" in capsys.readouterr().out and fetched == ["fortunes"]
    with pytest.raises(ValueError, match="has the splits .*, not 'all'"):
        TASK.datasets("builtin:fortunes", "all")
    with pytest.raises(ValueError, match="unknown built-in text_generation set.*poems"):
        TASK.prepare(["poems"])


def novel(title: str, n_chapters: int, numerals: bool) -> list[str]:
    lines = [title, "", "By Jane Austen", "", ""]
    for i in range(1, n_chapters + 1):
        if i == 3:
            lines += ["VOLUME II", "", ""]
        lines += [f"CHAPTER {roman(i) if numerals else i}", "", "",
                  f"{title} chapter {i} begins,", "    with verse,", "", "", "", "and ends."]
    return lines + ["", "THE END"]


def roman(n: int) -> str:
    out = ""
    for value, symbol in [(10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]:
        out += symbol * (n // value)
        n %= value
    return out


def write_lazyload(folder: Path, objects: dict[str, list[str]]) -> Path:
    """An R lazy-load database as R writes it: gzip index of offsets, zlib blocks with a size header."""
    folder.mkdir(parents=True)
    blob, variables = b"", {}
    for name, lines in objects.items():
        raw = rdata.unparser.unparse_data(rdata.conversion.convert_python_to_r_data(np.array(lines)))
        block = len(raw).to_bytes(4, "big") + zlib.compress(raw)
        variables[name] = np.array([len(blob), len(block)], dtype=np.int32)
        blob += block
    index = {"variables": variables, "references": {}, "compressed": True}
    (folder / "Rdata.rdb").write_bytes(blob)
    (folder / "Rdata.rdx").write_bytes(gzip.compress(rdata.unparser.unparse_data(
        rdata.conversion.convert_python_to_r_data(index))))
    return folder / "Rdata.rdx"


def test_lazyload_round_trip_and_damaged_block(tmp_path: Path) -> None:
    index = write_lazyload(tmp_path / "db", {"a": ["x", "y"], "b": ["z"]})
    assert read_r_lazyload(index) == {"a": ["x", "y"], "b": ["z"]}
    store = index.with_suffix(".rdb")
    store.write_bytes(store.read_bytes()[:6] + b"garbage" + store.read_bytes()[13:])
    with pytest.raises(ValueError, match=r"Rdata\.rdb: object 'a' at byte 0: damaged zlib block"):
        read_r_lazyload(index)


def test_split_chapters_keeps_headings_and_drops_layout() -> None:
    parts = builtin.split_chapters(novel("EMMA", 3, numerals=True))
    assert parts[0] == "EMMA\n\nBy Jane Austen"
    assert parts[2] == "CHAPTER II\n\nEMMA chapter 2 begins,\n    with verse,\n\nand ends."
    assert len(parts) == 4 and not any("VOLUME" in p or "THE END" in p for p in parts)


def test_austen_prepare_holds_out_whole_chapters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 cache: Path) -> None:
    root = tmp_path / "deb"
    write_lazyload(root / "usr/lib/R/site-library/janeaustenr/data",
                   {"emma": novel("EMMA", 25, numerals=True), "persuasion": novel("Persuasion", 15, numerals=False)})
    fake_package(monkeypatch, root)
    TASK.prepare(["default"])
    folder = cache / "text_generation" / "default"
    names = {s: sorted(p.name for p in (folder / s).glob("*.txt")) for s in BUILTIN_SPLITS}
    assert [len(names[s]) for s in BUILTIN_SPLITS] == [36 + 2, 2, 2]   # 40 chapters: 2 + 2 held out; title pages in train
    everything = sum(names.values(), [])
    assert len(everything) == len(set(everything)) == 42      # no chapter in two splits
    assert "emma-ch000.txt" in names["train"] and "persuasion-ch015.txt" in everything
    test = texts(TASK.datasets("builtin", "test"))
    assert len(test) == 2 and all(t.startswith("CHAPTER ") and t.endswith("and ends.") for t in test)
    (chapter_12,) = folder.glob("*/emma-ch012.txt")
    assert chapter_12.read_text().startswith("CHAPTER XII\n\nEMMA chapter 12 begins,")


def test_three_way_split_is_seeded_and_sized() -> None:
    names = builtin.three_way_split(269)
    assert names == builtin.three_way_split(269)
    assert [names.count(s) for s in BUILTIN_SPLITS] == [243, 13, 13]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_text_paragraphs_and_lines_end_at_lf_crlf_and_bare_cr(tmp_path, end):
    path = tmp_path / "old-mac.txt"
    path.write_bytes(end.join(["First para", "still first.", "", "Second."]).encode())
    assert texts(TASK.datasets(f"text:{path}", "all")) == ["First para\nstill first.", "Second."]
    assert texts(TASK.datasets(f"text:{path}?sample_by=line", "all")) == ["First para", "still first.", "Second."]
