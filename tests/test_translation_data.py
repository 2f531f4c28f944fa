"""Translation data: the TSV, JSONL and file-pair adapters, bad input, and the built-in sets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.engine.sets import BUILTIN_SPLITS
from tasks.translation import builtin
from zoo import get_task
from zoo.errors import ZooError

PAIRS = [(f"sentence {i}", f"frase {i}") for i in range(40)]

TASK = get_task("translation")


def write_tsv(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def as_pairs(dataset) -> list[tuple[str, str]]:
    return [(item["source"], item["target"]) for item in dataset]


# ---- tsv ------------------------------------------------------------------------------------


def test_tsv_round_trip_and_held_out_split(tmp_path):
    path = write_tsv(tmp_path / "train.tsv", PAIRS)
    everything = TASK.datasets(f"tsv:{path}", "all")
    assert as_pairs(everything) == PAIRS
    assert everything.skipped == 0 and str(path) in everything.source
    train, validation, test = (TASK.datasets(f"tsv:{path}", split) for split in ("train", "validation", "test"))
    assert len(train) >= 30 and len(validation) >= 1 and len(test) >= 1
    assert sorted(as_pairs(train) + as_pairs(validation) + as_pairs(test)) == sorted(PAIRS)
    assert as_pairs(TASK.datasets(f"tsv:{path}", "validation")) == as_pairs(validation)  # seeded


def test_tsv_strips_bom_crlf_and_outer_spaces(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes("\ufeffHello \t Hola\r\nGood night\tBuenas noches\r\n".encode("utf-8"))
    assert as_pairs(TASK.datasets(f"tsv:{path}", "all")) == [("Hello", "Hola"), ("Good night", "Buenas noches")]


@pytest.mark.parametrize(
    "bad_line, message",
    [("no tab here", "exactly one tab"), ("a\tb\tc", "found 2 tabs"), ("only source\t  ", "empty target"), ("\ttarget", "empty source")],
)
def test_tsv_bad_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(f"one\tuno\n{bad_line}\nthree\ttres\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.tsv:2: .*{message}"):
        TASK.datasets(f"tsv:{path}", "all")


def test_tsv_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("one\tuno\nniño\tchild\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.tsv: not UTF-8 \(byte 0x[0-9a-f]{2} at line 2\); re-save it as UTF-8"):
        TASK.datasets(f"tsv:{path}", "all")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        TASK.datasets(f"tsv:{tmp_path / 'nope.tsv'}", "all")
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(ValueError, match="no sentence pairs"):
        TASK.datasets(f"tsv:{tmp_path / 'empty.tsv'}", "all")


# ---- jsonl ----------------------------------------------------------------------------------


def test_jsonl_default_and_renamed_fields(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"src": s, "tgt": t}) + "\n" for s, t in PAIRS[:3]), encoding="utf-8")
    assert as_pairs(TASK.datasets(f"jsonl:{plain}", "all")) == PAIRS[:3]
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text(json.dumps({"en": "God", "es": "Dios", "id": 1}, ensure_ascii=False) + "\n\n", encoding="utf-8")
    assert as_pairs(TASK.datasets(f"jsonl:{renamed}?src=en&tgt=es", "all")) == [("God", "Dios")]


@pytest.mark.parametrize(
    "row, message",
    [({"src": "a"}, "no field 'tgt'"), ({"src": "a", "tgt": 3}, "'tgt' holds int, expected a string"), ({"src": " ", "tgt": "b"}, "empty 'src' field")],
)
def test_jsonl_bad_record_names_line_and_field(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"src": "x", "tgt": "y"}) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.jsonl:2: .*{message}"):
        TASK.datasets(f"jsonl:{path}", "all")


def test_jsonl_unknown_option_refused(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"src": "a", "tgt": "b"}\n')
    with pytest.raises(ValueError, match=r"unknown option.*source.*jsonl takes \[.src., .tgt.\]"):
        TASK.datasets(f"jsonl:{path}?source=en", "all")


# ---- pairs ----------------------------------------------------------------------------------


def test_pairs_round_trip(tmp_path):
    src, tgt = tmp_path / "train.en", tmp_path / "train.es"
    src.write_text("".join(s + "\n" for s, _ in PAIRS), encoding="utf-8")
    tgt.write_text("".join(t + "\n" for _, t in PAIRS), encoding="utf-8")
    assert as_pairs(TASK.datasets(f"pairs:{src},{tgt}", "all")) == PAIRS


@pytest.mark.parametrize("short_side", ["en", "es"])
def test_pairs_length_mismatch_names_both_files_and_line(tmp_path, short_side):
    src, tgt = tmp_path / "train.en", tmp_path / "train.es"
    lines = {"en": ["one", "two", "three", "four"], "es": ["uno", "dos", "tres", "cuatro"]}
    lines[short_side] = lines[short_side][:2]
    src.write_text("\n".join(lines["en"]) + "\n")
    tgt.write_text("\n".join(lines["es"]) + "\n")
    short, long = (src, tgt) if short_side == "en" else (tgt, src)
    with pytest.raises(ValueError) as err:
        TASK.datasets(f"pairs:{src},{tgt}", "all")
    message = str(err.value)
    assert f"{short} ends after line 2" in message
    assert f"{long} goes on to line 4" in message and "line 3" in message


def test_pairs_empty_line_named(tmp_path):
    src, tgt = tmp_path / "a.en", tmp_path / "a.es"
    src.write_text("one\ntwo\nthree\n")
    tgt.write_text("uno\n \ntres\n")
    with pytest.raises(ValueError, match=r"a\.es:2: empty line"):
        TASK.datasets(f"pairs:{src},{tgt}", "all")


def test_pairs_spec_needs_two_files(tmp_path):
    with pytest.raises(ValueError, match="pairs:SOURCE_FILE,TARGET_FILE"):
        TASK.datasets(f"pairs:{tmp_path / 'only.en'}", "all")


def test_unknown_format_and_builtin_name():
    with pytest.raises(ValueError, match="unknown format 'csv'; translation reads"):
        TASK.datasets("csv:x.csv", "all")
    with pytest.raises(ValueError, match="unknown built-in translation set 'klingon'.*'default', 'numbers'"):
        TASK.datasets("builtin:klingon", "train")


# ---- built-in sets --------------------------------------------------------------------------


def test_numbers_set_prepared_split_and_read_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="zoo data prepare translation"):
        TASK.datasets(f"builtin:{TASK.quick_set}", "train")
    TASK.prepare([TASK.quick_set])
    assert "10,800 train / 600 validation / 600 test" in capsys.readouterr().out
    splits = {split: as_pairs(TASK.datasets("builtin:numbers", split)) for split in BUILTIN_SPLITS}
    assert {split: len(pairs) for split, pairs in splits.items()} == {"train": 10_800, "validation": 600, "test": 600}
    sources = [{s for s, _ in pairs} for pairs in splits.values()]
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2]) and not (sources[1] & sources[2])
    everything = dict(p for pairs in splits.values() for p in pairs)
    assert everything["twenty-one"] == "vingt et un"
    assert everything["nine thousand, nine hundred and ninety-nine"] == "neuf mille neuf cent quatre-vingt-dix-neuf"
    assert sum(" thousand" in s and len(s.split()) > 6 for s in everything) > 1_000  # the larger numbers
    assert (tmp_path / "translation" / "numbers" / "test.tsv").is_file()
    TASK.prepare([TASK.quick_set])  # already there: kept, not rebuilt
    assert "already prepared" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"splits \['train', 'validation', 'test'\], not 'all'"):
        TASK.datasets("builtin:numbers", "all")


def test_prepare_refuses_unknown_set(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="unknown built-in translation set.*nope"):
        TASK.prepare(["nope"])


def test_chapter_split_holds_out_whole_chapters():
    pairs = {("Gen", c, v): (f"en {c}:{v}", f"es {c}:{v}") for c in range(1, 201) for v in range(1, 11 + c % 20)}
    splits = builtin._split_by_chapter(pairs, fraction=0.02)
    assert sum(len(p) for p in splits.values()) == len(pairs)
    assert all(len(splits[s]) >= 0.02 * len(pairs) for s in ("validation", "test"))
    chapters = {s: {p[0].split()[1].split(":")[0] for p in ps} for s, ps in splits.items()}
    assert not (chapters["train"] & chapters["validation"]) and not (chapters["train"] & chapters["test"])
    assert not (chapters["validation"] & chapters["test"])
    assert splits == builtin._split_by_chapter(pairs, fraction=0.02)  # seeded


def test_clean_verse_strips_markup_and_keeps_words_apart():
    kjv = ('<title canonical="true" type="psalm">A <w lemma="strong:H4210">Psalm</w> of David.</title> '
           '¶ <w lemma="x">LORD</w>, how <note placement="foot">Heb. many</note>are they '
           '<transChange type="added">increased</transChange>! \\nd <w>JEHOVAH</w> &amp; me.')
    assert builtin._clean_verse(kjv) == "A Psalm of David. LORD, how are they increased! JEHOVAH & me."
    assert builtin._clean_verse('<title><foreign>ב BETH.</foreign></title> Wherewithal') == "Wherewithal"
    rv = ('<w>y engendró</w><transChange type="added">un hijo</transChange><w>á su</w> semejanza; '
          '<w>sáca</w><transChange type="added">lo</transChange> de aquí; el ángel de '
          '<w>Jehová</w><transChange type="added">los</transChange><w>acose</w>. '
          '<w>Júrame</w><transChange type="added">lo</transChange>')
    assert builtin._clean_verse(rv) == (
        "y engendró un hijo á su semejanza; sácalo de aquí; el ángel de Jehová los acose. Júramelo"
    )


def test_chapter_split_keeps_a_repeated_verse_out_of_training():
    refrain = ("The word of the LORD came unto me, saying,", "Y fué á mí palabra de Jehová, diciendo:")
    pairs = {("Ezek", c, v): (f"en {c}:{v}", f"es {c}:{v}") for c in range(1, 101) for v in range(2, 12)}
    pairs.update({("Ezek", c, 1): refrain for c in range(1, 101)})  # verse 1 of every chapter is the same
    splits = builtin._split_by_chapter(pairs, fraction=0.05)
    sources = {split: {source for source, _ in part} for split, part in splits.items()}
    assert refrain in splits["test"] and refrain not in splits["train"] + splits["validation"]
    assert not (sources["train"] & sources["test"]) and not (sources["train"] & sources["validation"])
    assert not (sources["validation"] & sources["test"])
    kept = sorted(p for part in splits.values() for p in part if p != refrain)
    assert kept == sorted(p for p in pairs.values() if p != refrain)  # only copies of the repeated verse are dropped


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_pairs_and_tsv_end_lines_at_lf_crlf_and_bare_cr(tmp_path, end):
    src, tgt = tmp_path / "a.en", tmp_path / "a.es"
    src.write_bytes(end.join(["one", "two", "three"]).encode() + end.encode())
    tgt.write_bytes("\n".join(["uno", "dos", "tres"]).encode())   # the other file may use other line ends
    assert TASK.datasets(f"pairs:{src},{tgt}", "all").pairs == [("one", "uno"), ("two", "dos"), ("three", "tres")]
    tsv = tmp_path / "p.tsv"
    tsv.write_bytes(end.join(["one\tuno", "two\tdos"]).encode())
    assert TASK.datasets(f"tsv:{tsv}", "all").pairs == [("one", "uno"), ("two", "dos")]


def test_empty_files_and_nul_characters_name_the_file(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ZooError, match=f"{empty}: no sentence pairs"):
        TASK.datasets(f"tsv:{empty}", "all")
    nul = tmp_path / "nul.tsv"
    nul.write_bytes(b"one\tuno\ntw\x00o\tdos\n")
    with pytest.raises(ZooError, match=rf"{nul}: NUL character \(byte 0x00 at line 2\)"):
        TASK.datasets(f"tsv:{nul}", "all")
