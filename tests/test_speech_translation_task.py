"""The speech_translation Task: model built from the translations, learning, eval, predict, save/load,
the train/eval/predict commands and the benchmark workloads, on tiny fixtures written here."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess

import pytest
import sacrebleu
import torch

import zoo
from tasks.asr.audio import load_audio
from tasks.engine.data import write_jsonl
from tasks.engine.evaluation import EvalOptions
from tasks.engine.trainer import add_train_arguments
from tasks.speech_translation.bench import workloads
from tests.test_asr_task import noise_clip

PAIRS = [("one two", "un deux"), ("three", "trois"), ("four five", "quatre cinq"), ("six", "six"),
         ("seven eight", "sept huit"), ("nine", "neuf"), ("twenty", "vingt"), ("two six", "deux six")]
SPEECH = dict(dim=32, depth=1, heads=2, n_mels=40, conv_kernel=7)
TASK = zoo.get_task("speech_translation")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def manifest(tmp_path):
    """A JSONL manifest of eight short noise clips with French targets."""
    rows = []
    for i, (source, target) in enumerate(PAIRS):
        noise_clip(tmp_path / f"clip{i}.wav", 0.3 + 0.1 * i, i)
        rows.append({"audio_filepath": f"clip{i}.wav", "text": source, "translation": target})
    write_jsonl(tmp_path / "train.jsonl", rows)
    return tmp_path / "train.jsonl"


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    TASK.add_arguments(parser)
    return parser.parse_args(argv)


def test_task_is_registered_with_bleu_and_asr_defaults():
    assert (TASK.name, TASK.default_backbone, TASK.default_head) == ("speech_translation", "speech_encoder_tiny",
                                                                     "seq2seq")
    assert TASK.metric.name == "bleu" and TASK.metric.higher_is_better and TASK.generates
    assert TASK.quick_data == "builtin:numbers" and set(TASK.builtin_sets) == {"numbers", "default"}
    args = _args([])
    assert args.units == "sentencepiece" and args.time_budget == 900.0 and args.batch_size == 16


def test_build_model_learns_target_units_from_the_translations(manifest):
    train = TASK.datasets(f"manifest:{manifest}", "all")
    torch.manual_seed(0)
    model = TASK.build_model(_args(["--backbone-args", json.dumps(SPEECH), "--vocab-size", "40"]), train)
    assert type(model.head).__name__ == "Seq2SeqHead" and model.backbone.cfg.dim == 32
    assert model.head.proj.out_features == model.tokenizer.vocab_size
    assert model.tokenizer.decode(model.tokenizer.encode("quatre cinq")) == "quatre cinq"
    batch = TASK.make_collate(model, train=False)([train[i] for i in range(3)])
    assert batch["inputs"].shape[0] == 3 and batch["targets"].shape[0] == 3
    assert batch["targets"][0][batch["target_mask"][0]].tolist() == model.tokenizer.encode(PAIRS[0][1])


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs Debian's espeak-ng (apt-get install espeak-ng)")
def test_a_tiny_model_learns_to_translate_spoken_numbers(tmp_path):
    waves = []
    for i, (source, _) in enumerate(PAIRS):
        path = tmp_path / f"{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(path), source], check=True)
        waves.append(load_audio(path))
    samples = [{"audio": w, "text": t} for w, (_, t) in zip(waves, PAIRS)]
    torch.manual_seed(0)
    from tasks.asr.units import build_units
    units, tokenizer = build_units("seq2seq", "char", [t for _, t in PAIRS], 64)
    model = zoo.create_model("speech_encoder_tiny", "seq2seq", backbone_args={**SPEECH, "dim": 64, "spec_augment": False},
                             tokenizer=tokenizer, depth=1, heads=2, task=TASK.name, **units)
    batch = TASK.make_collate(model, train=False)(samples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(150):
        loss = model.loss(model(batch), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    hypotheses = TASK.predict(model.eval(), waves)
    assert sacrebleu.corpus_chrf(hypotheses, [[t for _, t in PAIRS]]).score > 50, hypotheses


def test_evaluate_scores_what_predict_says_and_save_load_keeps_it(tmp_path, manifest):
    data = TASK.datasets(f"manifest:{manifest}", "all")
    torch.manual_seed(0)
    model = TASK.build_model(_args(["--backbone-args", json.dumps(SPEECH), "--vocab-size", "40",
                                    "--head-args", '{"depth": 1, "heads": 2}']), data).eval()
    paths = [str(manifest.parent / f"clip{i}.wav") for i in range(len(PAIRS))]
    predictions = TASK.predict(model, paths, max_new_tokens=5)
    metrics = TASK.evaluate(model, data, EvalOptions())
    unbounded = TASK.predict(model, paths)
    references = [t for _, t in PAIRS]
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(unbounded, [references]).score)
    assert metrics["exact_match"] == sum(h == r for h, r in zip(unbounded, references)) / len(PAIRS)
    assert "chrf" in metrics
    model.save(tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    assert TASK.predict(loaded, paths, max_new_tokens=5) == predictions
    assert TASK.predict(loaded, paths, max_new_tokens=5, beams=2) == TASK.predict(model, paths, max_new_tokens=5,
                                                                                   beams=2)
    assert TASK.to_result(predictions[0]).text == predictions[0]


def test_train_eval_predict_commands(tmp_path, manifest, capsys):
    out = tmp_path / "run"
    TASK.command("train", ["--data", f"manifest:{manifest}", "--val-data", f"manifest:{manifest}",
                           "--max-steps", "2", "--batch-size", "4", "--out", str(out), "--no-progress",
                           "--backbone-args", json.dumps(SPEECH), "--vocab-size", "40", "--time-budget", "60"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and {"val_bleu", "val_chrf", "val_exact_match"} <= rows[-1].keys()
    capsys.readouterr()
    metrics = TASK.command("eval", ["--checkpoint", str(out), "--data", f"manifest:{manifest}"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == metrics and printed["n"] == len(PAIRS) and "bleu" in printed
    clip = str(manifest.parent / "clip0.wav")
    predictions = TASK.command("predict", ["--checkpoint", str(out), clip, "--max-new-tokens", "4", "--json"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line == {"input": clip, "prediction": predictions[0]}


def test_bench_pairs_have_the_same_shapes_and_parameters():
    pairs = workloads(torch.device("cpu"), "fp32", quick=True)
    assert [(o.mode, r.mode) for o, r in pairs] == [("train", "train"), ("inference", "inference")]
    for ours, reference in pairs:
        assert ours.unit == reference.unit == "audio seconds" and ours.items == reference.items == 4.0
        count = [sum(p.numel() for p in w.model.parameters()) for w in (ours, reference)]
        assert abs(count[0] - count[1]) / count[0] < 0.1, count    # same widths, depths and heads
        assert ours.factory(1).items == 2.0
    greedy_ours, greedy_reference = pairs[1]
    with torch.inference_mode():
        assert [len(row) for row in greedy_ours.step()] == [8, 8]
        assert tuple(greedy_reference.step().shape) == (2, 8)
