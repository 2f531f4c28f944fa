"""The asr Task: collate and batching, units, the seq2seq head on speech, evaluation, prediction,
save/load and the train/eval/predict commands, on tiny fixtures written here."""
from __future__ import annotations

import argparse
import json
import math

import jiwer
import numpy as np
import pytest
import soundfile
import torch

import zoo
from tasks.asr.augment import random_speed
from tasks.asr.formats import normalize_text
from tasks.asr.evaluation import error_rates, transcribe
from tasks.asr.units import alphabet_for, build_units, encode_targets, ids_to_text
from tasks.engine.data import write_jsonl
from zoo.errors import ZooError
from zoo.tokenizer import Tokenizer
from tests.test_run_loggers import logged_samples

SPEECH = dict(dim=32, depth=1, heads=2, n_mels=40, conv_kernel=7)
TEXTS = ["one two", "three", "oh five six", "seven", "eight nine", "two two", "four", "zero one"]


def noise_clip(path, seconds: float, seed: int, rate: int = 16000, channels: int = 1):
    """A clip of band-limited noise bursts (something for log-mel to see); returns the path."""
    rng = np.random.default_rng(seed)
    wave = rng.standard_normal(int(seconds * rate)).astype(np.float32) * 0.1
    wave *= np.sin(np.linspace(0, np.pi * (2 + seed % 5), wave.shape[0])) ** 2
    soundfile.write(str(path), np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)
    return path


@pytest.fixture
def manifest(tmp_path):
    """A JSONL manifest of eight short noise clips with digit transcripts."""
    rows = []
    for i, text in enumerate(TEXTS):
        noise_clip(tmp_path / f"clip{i}.wav", 0.3 + 0.1 * i, i)
        rows.append({"audio_filepath": f"clip{i}.wav", "text": text})
    write_jsonl(tmp_path / "train.jsonl", rows)
    return tmp_path / "train.jsonl"


def ctc_model(alphabet: str | None = None, **head_args) -> zoo.ZooModel:
    torch.manual_seed(0)
    if alphabet is not None:
        head_args["alphabet"] = alphabet
    return zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH, task="asr", **head_args).eval()


def test_task_is_registered_with_wer_lower_is_better():
    task = zoo.get_task("asr")
    assert (task.name, task.default_backbone, task.default_head) == ("asr", "speech_encoder_tiny", "ctc")
    assert task.metric.name == "wer" and not task.metric.higher_is_better
    assert task.quick_data == "builtin:digits"


def test_collate_gives_waveforms_mask_and_targets_without_bos_eos(manifest):
    task = zoo.get_task("asr")
    dataset = task.datasets(f"manifest:{manifest}", "all")
    model = ctc_model()
    batch = task.make_collate(model, train=True)([dataset[0], dataset[2]])
    assert batch["inputs"].shape == batch["mask"].shape and batch["mask"].sum(1).tolist() == [4800, 8000]
    assert batch["texts"] == ["one two", "oh five six"]
    assert batch["target_mask"].sum(1).tolist() == [7, 11]
    assert ids_to_text(model, batch["targets"][0, :7].tolist()) == "one two"
    assert Tokenizer.bos_id not in batch["targets"][1].tolist() or model.head.alphabet[Tokenizer.bos_id] == "'"


def test_speed_perturbation_changes_duration_and_pitch_in_training_only(manifest):
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 440 * t)  # (S,)
    for factor in (0.9, 1.1, 1.2, 0.51):   # 0.51 is played as 51/100, not rounded to a simpler fraction
        [faster] = random_speed([tone], [factor])
        peak = float(torch.fft.rfft(faster).abs().argmax()) * 16000 / faster.shape[0]
        assert faster.shape[0] == math.ceil(16000 / factor) and peak == pytest.approx(440 * factor, abs=2)
    assert random_speed([tone], [1.0])[0] is tone
    with pytest.raises(ValueError, match="speed factors must be positive"):
        random_speed([tone], [1.1, 0.0])
    task = zoo.get_task("asr")
    dataset = task.datasets(f"manifest:{manifest}", "all")
    model = ctc_model()
    model.preprocessing["speed_perturb"] = [0.9, 1.1]
    samples = [dataset[7]] * 16  # 1.0 s each
    lengths = task.make_collate(model, train=True)(samples)["mask"].sum(1)
    assert set(lengths.tolist()) == {math.ceil(16000 / 0.9), math.ceil(16000 / 1.1)}
    assert task.make_collate(model, train=False)(samples)["mask"].sum(1).tolist() == [len(samples[0]["audio"])] * 16


def test_batch_sampler_groups_similar_lengths_and_covers_every_utterance_once(manifest):
    task = zoo.get_task("asr")
    dataset = task.datasets(f"manifest:{manifest}", "all")
    batches = list(task.batch_sampler(dataset, 2, torch.Generator().manual_seed(0), train=True))
    assert sorted(i for b in batches for i in b) == list(range(len(dataset)))
    assert all(abs(b[0] - b[-1]) <= 1 for b in batches)   # clips grow with their index
    again = list(task.batch_sampler(dataset, 2, torch.Generator().manual_seed(0), train=True))
    assert again == batches and task.batch_sampler(dataset, 2, torch.Generator(), train=False) is None


def test_units_characters_and_sentencepiece():
    assert alphabet_for(["route 7", "cafe"]) == "_ 'abcdefghijklmnopqrstuvwxyz7"
    args, tokenizer = build_units("ctc", "char", TEXTS, 64)
    assert tokenizer is None and args == {"alphabet": alphabet_for(TEXTS)}
    args, tokenizer = build_units("ctc", "sentencepiece", TEXTS * 4, 30)
    assert args == {"vocab_size": tokenizer.vocab_size, "alphabet": None}
    model = zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH, tokenizer=tokenizer, **args)
    targets, mask = encode_targets(model, ["oh five six", "seven"])
    assert ids_to_text(model, targets[0][mask[0]].tolist()) == "oh five six"
    assert (targets[mask] > Tokenizer.eos_id).all()   # never the blank (pad 0) nor BOS/EOS
    args, tokenizer = build_units("seq2seq", "char", TEXTS, 64)
    pieces = [tokenizer.sp.id_to_piece(i) for i in tokenizer.encode("oh one")]
    assert set(args) == {"vocab_size"} and pieces == ["\u2581", "o", "h", "\u2581", "o", "n", "e"]
    with pytest.raises(ValueError, match="unknown --units"):
        build_units("ctc", "words", TEXTS, 64)


def test_error_rates_on_normalised_text():
    rates = error_rates(["One, two!", "three  four"], ["one two", "three five"])
    assert rates["wer"] == pytest.approx(1 / 4) and rates["cer"] == pytest.approx(3 / 17)
    with pytest.raises(ValueError, match="2 transcripts for 1 references"):
        error_rates(["a", "b"], ["a"])


def test_seq2seq_head_trains_and_decodes_on_the_speech_encoder(manifest):
    task = zoo.get_task("asr")
    dataset = task.datasets(f"manifest:{manifest}", "all")
    args, tokenizer = build_units("seq2seq", "char", TEXTS, 64)
    torch.manual_seed(0)
    model = zoo.create_model("speech_encoder_tiny", "seq2seq", backbone_args=SPEECH, tokenizer=tokenizer,
                             depth=1, heads=2, **args)
    batch = task.make_collate(model, train=True)([dataset[i] for i in range(4)])
    assert batch["targets"][0][batch["target_mask"][0]].tolist() == tokenizer.encode("one two")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = model.loss(model(batch), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    model.eval()
    generated = model.generate({"inputs": batch["inputs"], "mask": batch["mask"]}, max_new_tokens=5)
    assert len(generated) == 4 and all(len(row) <= 5 for row in generated)
    texts = transcribe(model, lambda i: dataset[i]["audio"], dataset.lengths[:2], batch_size=2, beams=2,
                       max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_build_model_reads_units_from_the_training_set(manifest):
    task = zoo.get_task("asr")
    dataset = task.datasets(f"manifest:{manifest}", "all")
    parser = argparse.ArgumentParser()
    task.add_arguments(parser)
    args = parser.parse_args([])
    args.backbone, args.head, args.backbone_args, args.head_args = None, None, SPEECH, {"dropout": 0.0}
    model = task.build_model(args, dataset)
    assert model.head.alphabet == alphabet_for(TEXTS) and model.tokenizer is None
    assert model.preprocessing == {"sample_rate": 16000, "speed_perturb": [0.9, 1.0, 1.1, 1.2]} and model.task == "asr"
    args.speed_perturb = [1.0]
    assert task.build_model(args, dataset).preprocessing["speed_perturb"] == []
    args.head, args.head_args = "seq2seq", {"depth": 1, "heads": 2}
    model = task.build_model(args, dataset)
    assert model.tokenizer is not None and model.head.proj.out_features == model.tokenizer.vocab_size
    args.head, args.backbone, args.backbone_args = None, "text_encoder_tiny", {"dim": 32, "depth": 1, "heads": 2}
    with pytest.raises(ValueError, match="asr needs an audio one"):
        task.build_model(args, dataset)


def test_save_load_gives_the_same_transcripts(tmp_path, manifest):
    task = zoo.get_task("asr")
    paths = [str(manifest.parent / f"clip{i}.wav") for i in range(4)]
    paths.append(str(noise_clip(tmp_path / "stereo44k.wav", 0.5, 9, rate=44100, channels=2)))
    model = ctc_model(alphabet_for(TEXTS))
    with torch.no_grad():  # a confident head, so the transcripts are not all empty
        model.head.proj.bias.copy_(torch.linspace(-3, 3, model.head.proj.out_features))
    model.save(tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    for beams in (1, 3):
        before = task.predict(model, paths, beams=beams)
        assert task.predict(loaded, paths, beams=beams) == before and any(before)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        task.predict(loaded, [str(tmp_path / "missing.wav")])


def test_train_eval_predict_commands(tmp_path, manifest, capsys):
    task = zoo.get_task("asr")
    out = tmp_path / "run"
    task.command("train", ["--data", f"manifest:{manifest}", "--val-data", f"manifest:{manifest}",
                           "--max-steps", "2", "--batch-size", "4", "--out", str(out), "--no-progress",
                           "--backbone-args", json.dumps(SPEECH), "--time-budget", "60"])
    assert (out / "best" / "config.json").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and "val_wer" in rows[-1] and "val_cer" in rows[-1]
    (samples,) = logged_samples(out)
    assert samples.count("reference: ") == 3 and f"reference: {TEXTS[0]}" in samples
    capsys.readouterr()
    metrics = task.command("eval", ["--checkpoint", str(out), "--data", f"manifest:{manifest}"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == metrics and printed["split"] == "all" and printed["n"] == len(TEXTS)
    clips = [str(manifest.parent / f"clip{i}.wav") for i in range(len(TEXTS))]
    hypotheses = [normalize_text(t) for t in task.predict(zoo.load(out / "best"), clips)]
    assert printed["wer"] == pytest.approx(jiwer.wer(TEXTS, hypotheses))    # the eval scores what predict says
    assert printed["cer"] == pytest.approx(jiwer.cer(TEXTS, hypotheses))
    clip = str(manifest.parent / "clip0.wav")
    predictions = task.command("predict", ["--checkpoint", str(out), clip, "--beams", "2", "--json"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line == {"input": clip, "prediction": predictions[0]}


def test_hybrid_head_trains_both_parts_and_decodes_by_ctc_or_jointly(tmp_path, manifest, capsys):
    task = zoo.get_task("asr")
    out = tmp_path / "hybrid"
    task.command("train", ["--data", f"manifest:{manifest}", "--val-data", f"manifest:{manifest}", "--head", "hybrid",
                           "--ctc-weight", "0.4", "--head-args", json.dumps({"depth": 1, "heads": 2}),
                           "--max-steps", "2", "--batch-size", "4", "--out", str(out), "--no-progress",
                           "--backbone-args", json.dumps(SPEECH), "--time-budget", "60"])
    config = json.loads((out / "best" / "config.json").read_text())
    assert sorted(config["heads"]) == ["ctc", "seq2seq"] and config["head_weights"] == {"ctc": 0.4, "seq2seq": 0.6}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss/ctc", "train_loss/seq2seq", "val_wer"} <= set().union(*rows)
    model = zoo.load(out / "best")
    clips = [str(manifest.parent / f"clip{i}.wav") for i in range(3)]
    assert task.predict(model, clips) == task.predict(model.single_head("ctc"), clips)        # CTC: the fast path
    joint = task.predict(model, clips, beams=2, ctc_weight=0.5, max_new_tokens=4)
    assert len(joint) == 3 and all(isinstance(text, str) for text in joint)
    capsys.readouterr()
    metrics = task.command("eval", ["--checkpoint", str(out), "--data", f"manifest:{manifest}",
                                    "--decode-ctc-weight", "0.3", "--eval-beams", "2"])
    assert 0.0 <= metrics["cer"] and "wer" in metrics
    predicted = task.command("predict", ["--checkpoint", str(out), *clips, "--beams", "2", "--max-new-tokens", "4",
                                         "--decode-ctc-weight", "0.5"])
    assert predicted == joint
    with pytest.raises(ZooError, match="joint decoding needs a hybrid model"):
        task.predict(ctc_model(), clips, ctc_weight=0.3)
