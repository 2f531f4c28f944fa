"""ASR audio pipeline and data adapters, on small fixtures written here (tones as audio)."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import soundfile
import torch

import zoo
from tasks.asr import builtin
from tasks.asr.audio import AudioError, collate_audio, load_audio, save_flac
from tasks.asr.formats import normalize_text
from tasks.engine.data import write_jsonl
from tasks.engine.sets import BUILTIN_SPLITS
from zoo.errors import ZooError

TASK = zoo.get_task("asr")
read = TASK.datasets


def tone(path, seconds=0.5, rate=16000, freq=440.0, channels=1, amplitude=0.5, **kwargs):
    """Write a sine tone and return its path."""
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * freq * t).astype(np.float32)
    soundfile.write(str(path), np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate, **kwargs)
    return path


def dominant_frequency(wave: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return float(torch.argmax(spectrum)) * rate / wave.shape[0]


@pytest.fixture(autouse=True)
def zoo_data(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "cache"))


# ---- audio ------------------------------------------------------------------------------------

def test_load_audio_downmixes_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    left, right = 0.6 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(str(tmp_path / "stereo.wav"), np.stack([left, right], axis=1), 44100)
    wave = load_audio(tmp_path / "stereo.wav")
    assert wave.dtype == torch.float32 and wave.shape == (16000,)
    assert dominant_frequency(wave, 16000) == pytest.approx(440, abs=2)
    assert float(wave[1000:-1000].abs().max()) == pytest.approx(0.4, abs=0.01)  # mean of 0.6 and 0.2


def test_load_audio_upsamples_narrowband_flac_and_ogg(tmp_path):
    wave = load_audio(tone(tmp_path / "phone.flac", seconds=0.25, rate=8000, freq=1000))
    assert wave.shape == (4000,) and dominant_frequency(wave, 16000) == pytest.approx(1000, abs=4)
    assert load_audio(tone(tmp_path / "a.ogg", seconds=0.5)).shape == (8000,)


def test_save_flac_round_trip_clips(tmp_path):
    wave = torch.linspace(-1.5, 1.5, 1600)
    save_flac(tmp_path / "x.flac", wave)
    back = load_audio(tmp_path / "x.flac")
    assert soundfile.info(str(tmp_path / "x.flac")).samplerate == 16000
    assert torch.allclose(back, wave.clamp(-1, 1), atol=1 / 16384)


def test_bad_audio_files_raise_naming_the_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    soundfile.write(str(tmp_path / "header_only.wav"), np.zeros(0, np.float32), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    flac = tone(tmp_path / "good.flac", seconds=1.0).read_bytes()
    (tmp_path / "truncated.flac").write_bytes(flac[:100])
    tone(tmp_path / "long.wav", seconds=3.0, rate=8000)
    for name, reason in [("empty.wav", "empty"), ("header_only.wav", "0 frames"), ("corrupt.wav", "unreadable"),
                         ("truncated.flac", "corrupt")]:
        with pytest.raises(AudioError, match=reason) as err:
            load_audio(tmp_path / name)
        assert str(tmp_path / name) in str(err.value)
    with pytest.raises(AudioError, match=r"long.wav: 3.0 s long, over the limit of 2 s"):
        load_audio(tmp_path / "long.wav", max_seconds=2)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")


def test_collate_audio_pads_with_mask():
    batch = collate_audio([{"audio": torch.ones(3), "text": "a"}, {"audio": torch.full((5,), 2.0), "text": "b c"}])
    assert batch["inputs"].shape == (2, 5) and batch["mask"].dtype == torch.bool
    assert batch["inputs"][0].tolist() == [1, 1, 1, 0, 0]
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["texts"] == ["a", "b c"]


def test_normalize_text():
    assert normalize_text("  \u201cWell-known,\u201d she said: 'Don\u2019t!' ") == "well known she said don't"
    assert normalize_text("CHAPTER 12.  The END") == "chapter 12 the end"
    assert normalize_text("Café--naïve  ") == "café naïve"
    assert normalize_text("?! '' ") == ""


# ---- adapters ---------------------------------------------------------------------------------

def test_manifest_jsonl_round_trip_and_split(tmp_path):
    (tmp_path / "clips").mkdir()
    rows = [{"audio_filepath": str(tone(tmp_path / "clips" / f"{i}.wav", seconds=0.1 * (i + 1), freq=300 + 50 * i)
                                   .relative_to(tmp_path)), "text": f"Utterance, number {i}!", "duration": 0.1 * (i + 1)}
            for i in range(20)]
    write_jsonl(tmp_path / "m.jsonl", rows)
    everything = read(f"manifest:{tmp_path / 'm.jsonl'}", "all")
    assert len(everything) == 20 and everything.skipped == 0
    sample = everything[3]
    assert sample["text"] == "utterance number 3" and sample["path"] == str(tmp_path / "clips" / "3.wav")
    assert sample["audio"].shape == (6400,) and everything.lengths[3] == 6400
    assert dominant_frequency(sample["audio"], 16000) == pytest.approx(450, abs=5)
    parts = [read(f"manifest:{tmp_path / 'm.jsonl'}", split) for split in ("train", "validation", "test")]
    assert len(parts[0]) >= 15 and len(parts[1]) >= 1 and len(parts[2]) >= 1
    assert sorted(e.text for part in parts for e in part.entries) == sorted(e.text for e in everything.entries)


def test_manifest_csv_and_its_errors(tmp_path):
    tone(tmp_path / "a.flac")
    (tmp_path / "m.csv").write_text('audio_filepath,text,duration\na.flac,"Hello, world",0.5\na.flac,Again,\n')
    dataset = read(f"manifest:{tmp_path / 'm.csv'}", "all")
    assert [e.text for e in dataset.entries] == ["hello world", "again"]
    (tmp_path / "bad.csv").write_text("file,text\na.flac,hi\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: no column 'audio_filepath'"):
        read(f"manifest:{tmp_path / 'bad.csv'}", "all")


@pytest.mark.parametrize("row, message", [
    ({"text": "hi"}, r"m.jsonl:2: no field 'audio_filepath'"),
    ({"audio_filepath": "a.wav"}, r"m.jsonl:2: no field 'text'"),
    ({"audio_filepath": "a.wav", "text": " ... "}, r"m.jsonl:2: empty text"),
    ({"audio_filepath": "a.wav", "text": 5}, r"m.jsonl:2: field 'text' holds int, expected a string"),
    ({"audio_filepath": "nope.wav", "text": "hi"}, r"m.jsonl:2: audio file .*nope.wav not found"),
    ({"audio_filepath": "a.wav", "text": "hi", "duration": "long"}, r"m.jsonl:2: 'duration' must be a number"),
])
def test_manifest_bad_rows_name_file_and_line(tmp_path, row, message):
    tone(tmp_path / "a.wav")
    write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": "a.wav", "text": "fine"}, row])
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        read(f"manifest:{tmp_path / 'm.jsonl'}", "all")


def test_damaged_audio_in_a_set_is_skipped_with_a_warning(tmp_path):
    tone(tmp_path / "good.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    (tmp_path / "empty.flac").write_bytes(b"")
    write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": name, "text": "x"} for name in ("good.wav", "bad.wav", "empty.flac")])
    with pytest.warns(UserWarning) as caught:
        dataset = read(f"manifest:{tmp_path / 'm.jsonl'}", "all")
    assert len(dataset) == 1 and dataset.skipped == 2
    assert any("bad.wav" in str(w.message) for w in caught) and any("empty.flac" in str(w.message) for w in caught)
    (tmp_path / "good.wav").write_bytes(b"RIFF")  # damaged after the check: the load names the file
    with pytest.raises(AudioError, match="good.wav"):
        dataset[0]


def librispeech_fixture(root):
    chapter = root / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    for i in range(3):
        tone(chapter / f"84-121123-000{i}.flac", seconds=0.2, freq=200 + 100 * i)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n")
    return chapter


def test_librispeech_layout(tmp_path):
    chapter = librispeech_fixture(tmp_path)
    with pytest.warns(UserWarning, match="84-121123-0002.flac: no line for it"):
        dataset = read(f"librispeech:{tmp_path}", "all")
    assert [e.text for e in dataset.entries] == ["go do you hear", "but in less than five minutes"]
    assert dataset.skipped == 1 and dataset[1]["audio"].shape == (3200,)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO\n84-121123-0009 MISSING AUDIO\n")
    with pytest.raises(FileNotFoundError, match=r"84-121123.trans.txt:2: audio file .*84-121123-0009.flac not found"):
        read(f"librispeech:{tmp_path}", "all")
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO\n84-121123-0001\n")
    with pytest.raises(ValueError, match=r"84-121123.trans.txt:2: expected 'UTTERANCE-ID TEXT'"):
        read(f"librispeech:{tmp_path}", "all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no \\*.trans.txt transcripts"):
        read(f"librispeech:{tmp_path / 'empty'}", "all")
    with pytest.raises(FileNotFoundError, match="nothing: no such LibriSpeech folder"):
        read(f"librispeech:{tmp_path / 'nothing'}", "all")


def test_commonvoice_layout(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("a", "b", "c"):
        tone(tmp_path / "clips" / f"{name}.flac", seconds=0.1)
    header = "client_id\tpath\tsentence\tup_votes\n"
    (tmp_path / "train.tsv").write_text(header + 'x\ta.flac\t"Quoted" words here.\t2\ny\tb.flac\tSecond one\t1\n')
    (tmp_path / "dev.tsv").write_text(header + "z\tc.flac\tThe dev clip\t3\n")
    train = read(f"commonvoice:{tmp_path}", "train")
    assert [e.text for e in train.entries] == ["quoted words here", "second one"]
    assert [e.path.name for e in read(f"commonvoice:{tmp_path}", "validation").entries] == ["c.flac"]
    assert len(read(f"commonvoice:{tmp_path}", "all")) == 3
    with pytest.raises(ZooError, match=r"has no test split; pass --split validation"):
        read(f"commonvoice:{tmp_path}", "test")
    dev = read(f"commonvoice:{tmp_path}?split=dev", "all")
    assert [e.path.name for e in dev.entries] == ["c.flac"] and dev[0]["text"] == "the dev clip"
    with pytest.raises(FileNotFoundError, match=r"test.tsv: no such Common Voice table .*dev, train"):
        read(f"commonvoice:{tmp_path}?split=test", "all")
    (tmp_path / "other.tsv").write_text("client_id\tpath\ttext\nx\ta.flac\thi\n")
    with pytest.raises(ValueError, match=r"other.tsv:1: no column 'sentence'"):
        read(f"commonvoice:{tmp_path}?split=other", "all")
    (tmp_path / "other.tsv").write_text(header + "x\ta.flac\n")
    with pytest.raises(ValueError, match=r"other.tsv:2: 2 fields, but the header \(line 1\) has 4"):
        read(f"commonvoice:{tmp_path}?split=other", "all")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lang'\]; commonvoice takes \['split'\]"):
        read(f"commonvoice:{tmp_path}?lang=en", "all")


def test_unknown_format_and_unprepared_builtin(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'wav'; asr reads builtin, librispeech:PATH, manifest:PATH, commonvoice:PATH"):
        read(f"wav:{tmp_path}", "all")
    with pytest.raises(FileNotFoundError, match="zoo data prepare asr"):
        read("builtin:digits", "train")
    with pytest.raises(ValueError, match="unknown built-in asr set 'nope'"):
        read("builtin:nope", "train")


# ---- built-in sets ----------------------------------------------------------------------------

def test_speakable_sentences_keep_only_what_is_said_as_written():
    prose = ("It is a truth universally acknowledged. Mr. Darcy bowed to them all.\n"
             "She was born in 1775, they say. Yes. \u201cWhat a very fine day it is!\u201d\n\n"
             "CHAPTER TWELVE began here with words. Do you not think so?")
    assert builtin.speakable_sentences([prose]) == [
        "It is a truth universally acknowledged.", "What a very fine day it is!", "Do you not think so?"]


def test_voices_of_the_splits_are_disjoint():
    plan = builtin._plan(builtin._digit_strings(3000, 0), (2000, 500, 500), 0)
    voices = {split: {(u.engine, u.voice) for u in plan if u.file.startswith(split + "/")} for split in BUILTIN_SPLITS}
    assert not voices["train"] & voices["validation"] and not voices["train"] & voices["test"]
    assert not voices["validation"] & voices["test"]
    assert ("flite", "slt") in voices["test"] and len(voices["train"]) > 20
    digits = [u.text for u in plan]
    assert all(1 <= len(t.split()) <= 7 and set(t.split()) <= {*builtin._DIGIT_WORDS, "oh"} for t in digits)
    assert {"oh", "zero"} <= {w for t in digits for w in t.split()}


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")),
                    reason="needs Debian's espeak-ng and flite (apt-get install espeak-ng flite)")
def test_tiny_synthesis_reads_back_through_the_manifest(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(builtin._SIZES, "digits", (4, 2, 2))
    TASK.prepare(["digits"])
    assert "asr:digits: 4 / 2 / 2 utterances" in capsys.readouterr().out
    folder = tmp_path / "cache" / "asr" / "digits"
    for split, n in zip(BUILTIN_SPLITS, (4, 2, 2)):
        dataset = read("builtin:digits", split)
        assert len(dataset) == n and dataset.skipped == 0
        sample = dataset[0]
        assert sample["audio"].dtype == torch.float32 and 0.2 < sample["audio"].shape[0] / 16000 < 10
        assert float(sample["audio"].abs().max()) > 0.05
        rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]
        assert sample["text"] == rows[0]["text"] and soundfile.info(sample["path"]).samplerate == 16000
    TASK.prepare(["digits"])
    assert "already prepared" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read("builtin:digits", "test")


# ---- short clips, encodings and broken manifests ----------------------------------------------

def test_short_clip_in_a_set_is_a_counted_skip(tmp_path):
    tone(tmp_path / "good.wav")
    tone(tmp_path / "blip.wav", seconds=0.01)
    write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": "good.wav", "text": "a"},
                                       {"audio_filepath": "blip.wav", "text": "b"}])
    with pytest.warns(UserWarning, match=r"blip.wav: 10 ms long \(160 samples\), shorter than the 0.1 s"):
        dataset = read(f"manifest:{tmp_path / 'm.jsonl'}", "all")
    assert dataset.skipped == 1 and [e.text for e in dataset.entries] == ["a"]


@pytest.mark.parametrize("frames", [1, 160])
def test_short_clip_given_to_predict_is_an_error_naming_it(tmp_path, frames):
    import zoo

    clip = tmp_path / "tiny.wav"
    soundfile.write(str(clip), np.zeros(frames, dtype=np.float32), 16000)
    model = zoo.create_model("speech_encoder_tiny", "ctc", backbone_args={"dim": 32, "depth": 1, "n_mels": 40},
                             task="asr", alphabet="ab").eval()
    with pytest.raises(ZooError, match=rf"{clip}: \d+ ms long \({frames} samples\), shorter than"):
        zoo.get_task("asr").predict(model, [str(clip)])


@pytest.mark.parametrize("samples", [1, 399, 400, 1359, 1360])
def test_front_end_pads_clips_shorter_than_its_window(samples):
    import zoo

    encoder = zoo.create_backbone("speech_encoder_tiny", dim=32, depth=1, n_mels=40).eval()
    waves = torch.randn(2, samples)
    features = encoder(waves, torch.ones(2, samples, dtype=torch.bool))
    steps = int(encoder.output_lengths(torch.tensor([samples]))[0])
    assert features.tokens.shape == (2, max(steps, 1), 32) and torch.isfinite(features.tokens).all()
    assert features.mask.sum(dim=1).tolist() == [steps, steps] and steps == (1 if samples >= 1360 else 0)


def test_unbalanced_quote_in_a_csv_manifest_names_the_row(tmp_path):
    tone(tmp_path / "a.flac")
    (tmp_path / "m.csv").write_text('audio_filepath,text\na.flac,"hello world\na.flac,second\na.flac,third"\n')
    with pytest.raises(ZooError, match=r"m.csv:2: a field runs over 3 lines \(an unbalanced quote\?\)"):
        read(f"manifest:{tmp_path / 'm.csv'}", "all")
    (tmp_path / "d.csv").write_text("audio_filepath,text,text\na.flac,x,y\n")
    with pytest.raises(ZooError, match=r"d.csv:1: the header names the column 'text' twice"):
        read(f"manifest:{tmp_path / 'd.csv'}", "all")


@pytest.mark.parametrize("layout", ["manifest", "csv", "librispeech", "commonvoice"])
def test_non_utf8_listings_name_the_file_and_line(tmp_path, layout):
    tone(tmp_path / "a.flac")
    line = 2 if layout in ("manifest", "librispeech") else 3  # the tables have a header line
    if layout == "manifest":
        bad, spec = tmp_path / "m.jsonl", f"manifest:{tmp_path / 'm.jsonl'}"
        bad.write_bytes(b'{"audio_filepath": "a.flac", "text": "ok"}\n{"audio_filepath": "a.flac", "text": "caf\xe9"}\n')
    elif layout == "csv":
        bad, spec = tmp_path / "m.csv", f"manifest:{tmp_path / 'm.csv'}"
        bad.write_bytes(b"audio_filepath,text\na.flac,ok\na.flac,caf\xe9\n")
    elif layout == "librispeech":
        folder = tmp_path / "19" / "198"
        folder.mkdir(parents=True)
        shutil.copy(tmp_path / "a.flac", folder / "19-198-0000.flac")
        bad, spec = folder / "19-198.trans.txt", f"librispeech:{tmp_path}"
        bad.write_bytes(b"19-198-0000 OK\n19-198-0001 CAF\xc9\n")
    else:
        (tmp_path / "clips").mkdir()
        bad, spec = tmp_path / "train.tsv", f"commonvoice:{tmp_path}"
        bad.write_bytes(b"path\tsentence\na.flac\tok\na.flac\tcaf\xe9\n")
    with pytest.raises(ZooError, match=rf"{bad}: not UTF-8 \(byte 0x[ce]9 at line {line}\); re-save it as UTF-8"):
        read(spec, "all")
