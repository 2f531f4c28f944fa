"""Speech translation data: the manifest and CoVoST TSV adapters, bad input, and the built-in set's
synthesis (a tiny plan, voices of validation and test never heard in training)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import zoo
from tasks.engine.data import write_jsonl
from tasks.speech_translation import builtin
from tests.test_asr_task import noise_clip
from zoo.errors import ZooError

PAIRS = [("one", "un"), ("twenty-one", "vingt et un"), ("eighty", "quatre-vingts"), ("two", "deux"),
         ("three hundred", "trois cents"), ("seven", "sept")]
TASK = zoo.get_task("speech_translation")


def clips(folder: Path) -> list[str]:
    """One noise clip per pair in ``folder``; their file names."""
    names = []
    for i in range(len(PAIRS)):
        noise_clip(folder / f"clip{i}.wav", 0.3 + 0.05 * i, i)
        names.append(f"clip{i}.wav")
    return names


def test_manifest_reads_translations_as_written_and_splits_by_audio_path(tmp_path):
    rows = [{"audio_filepath": name, "text": source, "translation": target}
            for name, (source, target) in zip(clips(tmp_path), PAIRS)]
    write_jsonl(tmp_path / "st.jsonl", rows)
    every = TASK.datasets(f"manifest:{tmp_path / 'st.jsonl'}", "all")
    assert [every[i]["text"] for i in range(len(every))] == [target for _, target in PAIRS]  # accents, hyphens kept
    assert every[0]["audio"].ndim == 1 and every[0]["path"] == str(tmp_path / "clip0.wav")
    splits = [TASK.datasets(f"manifest:{tmp_path / 'st.jsonl'}", s) for s in ("train", "validation", "test")]
    assert sorted(e.text for d in splits for e in d.entries) == sorted(t for _, t in PAIRS)


def test_manifest_target_field_option_and_csv(tmp_path):
    names = clips(tmp_path)
    write_jsonl(tmp_path / "st.jsonl", [{"audio_filepath": n, "fr": t} for n, (_, t) in zip(names, PAIRS)])
    renamed = TASK.datasets(f"manifest:{tmp_path / 'st.jsonl'}?target=fr", "all")
    assert [e.text for e in renamed.entries] == [t for _, t in PAIRS]
    with pytest.raises(ZooError, match=r"st\.jsonl:1.*translation.*\?target=FIELD"):
        TASK.datasets(f"manifest:{tmp_path / 'st.jsonl'}", "all")
    (tmp_path / "st.csv").write_text("audio_filepath,translation\n" + "".join(
        f"{n},\"{t}\"\n" for n, (_, t) in zip(names, PAIRS)), encoding="utf-8")
    assert [e.text for e in TASK.datasets(f"manifest:{tmp_path / 'st.csv'}", "all").entries] == [t for _, t in PAIRS]


def test_covost_tsv_with_extra_columns(tmp_path):
    lines = ["path\tsentence\ttranslation\tclient_id"]
    lines += [f"{n}\t{s}\t{t}\tspeaker{i}" for i, (n, (s, t)) in enumerate(zip(clips(tmp_path), PAIRS))]
    (tmp_path / "covost.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = TASK.datasets(f"tsv:{tmp_path / 'covost.tsv'}", "all")
    assert [e.text for e in data.entries] == [t for _, t in PAIRS]
    assert data[1]["path"] == str(tmp_path / "clip1.wav")


@pytest.mark.parametrize("row, message", [
    ({"audio_filepath": "clip0.wav", "translation": "   "}, r"st\.jsonl:2: empty 'translation'"),
    ({"audio_filepath": "gone.wav", "translation": "un"}, r"st\.jsonl:2: audio file .*gone\.wav not found"),
    ({"translation": "un"}, r"st\.jsonl:2.*audio_filepath"),
    ({"audio_filepath": "clip0.wav", "translation": 3}, r"st\.jsonl:2.*translation"),
])
def test_bad_manifest_rows_name_the_file_and_line(tmp_path, row, message):
    noise_clip(tmp_path / "clip0.wav", 0.3, 0)
    write_jsonl(tmp_path / "st.jsonl", [{"audio_filepath": "clip0.wav", "translation": "un"}, row])
    with pytest.raises((ZooError, FileNotFoundError), match=message):
        TASK.datasets(f"manifest:{tmp_path / 'st.jsonl'}", "all")


def test_bad_tables_and_options_are_refused_in_one_line(tmp_path):
    (tmp_path / "bad.tsv").write_text("path\tsentence\nclip0.wav\tone\n", encoding="utf-8")
    with pytest.raises(ZooError, match=r"bad\.tsv.*translation"):
        TASK.datasets(f"tsv:{tmp_path / 'bad.tsv'}", "all")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ZooError, match=r"empty\.jsonl: no utterances"):
        TASK.datasets(f"manifest:{tmp_path / 'empty.jsonl'}", "all")
    with pytest.raises(ZooError, match=r"unknown option\(s\) \['src'\]; manifest takes \['target'\]"):
        TASK.datasets(f"manifest:{tmp_path / 'empty.jsonl'}?src=en", "all")
    with pytest.raises(ZooError, match="unknown format 'pairs'.*manifest:PATH, tsv:PATH"):
        TASK.datasets(f"pairs:{tmp_path}", "all")


def test_a_damaged_clip_is_skipped_with_a_warning_and_counted(tmp_path):
    names = clips(tmp_path)
    (tmp_path / names[2]).write_bytes(b"RIFF not really a wav")
    write_jsonl(tmp_path / "st.jsonl", [{"audio_filepath": n, "translation": t} for n, (_, t) in zip(names, PAIRS)])
    with pytest.warns(UserWarning, match="clip2.wav"):
        data = TASK.datasets(f"manifest:{tmp_path / 'st.jsonl'}", "all")
    assert data.skipped == 1 and len(data) == len(PAIRS) - 1


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")),
                    reason="needs Debian's espeak-ng and flite (make sysdeps)")
def test_builtin_numbers_are_spoken_by_held_out_voices_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    monkeypatch.setitem(builtin.PLANS, "numbers", builtin.Plan("numbers", (6, 3, 3)))
    TASK.prepare(["numbers"])
    folder = tmp_path / "speech_translation" / "numbers"
    assert (folder / ".zoo-version").read_text().strip() == TASK.builtin_sets["numbers"].version == "3-asr2-translation2"
    voices, sources = {}, {}
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        voices[split] = {row["voice"] for row in rows}
        sources[split] = {row["text"] for row in rows}
        data = TASK.datasets("builtin:numbers", split)
        assert [e.text for e in data.entries] == [row["translation"] for row in rows] and len(data) == len(rows)
        tsv = dict(line.split("\t") for line in
                   (tmp_path / "translation" / "numbers" / f"{split}.tsv").read_text(encoding="utf-8").splitlines())
        assert all(tsv[row["text"]] == row["translation"] for row in rows)   # the translation set's own pairs
        assert data[0]["audio"].shape[0] == data.lengths[0]
    assert not voices["train"] & (voices["validation"] | voices["test"])
    assert not sources["train"] & (sources["validation"] | sources["test"])
