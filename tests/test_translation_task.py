"""The translation Task: tokenizers and collate, metrics, train/eval/predict commands, learning, bench."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from num2words import num2words

import zoo
from tasks.engine.trainer import add_train_arguments
from tasks.translation.evaluation import scores, translate
from tasks.translation.vocab import TARGET_KEY, tokenizers
from tests.test_run_loggers import logged_samples

TINY = ["--backbone-args", '{"dim": 32, "depth": 1, "heads": 2}', "--head-args", '{"depth": 1, "heads": 2}']


@pytest.fixture
def numbers_tsv(tmp_path: Path) -> Path:
    """0..999 written in English and French: a small, fully compositional corpus."""
    path = tmp_path / "numbers.tsv"
    path.write_text("".join(f"{num2words(n)}\t{num2words(n, lang='fr')}\n" for n in range(1000)), encoding="utf-8")
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


def train_args(task, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    task.add_arguments(parser)
    parser.set_defaults(backbone=task.default_backbone, head=task.default_head)
    return parser.parse_args(argv)


def test_registered_with_bleu_as_primary_metric():
    task = zoo.get_task("translation")
    assert task.metric.name == "bleu" and task.metric.higher_is_better
    assert (task.default_backbone, task.default_head) == ("text_encoder_tiny", "seq2seq")
    assert "seq2seq" in zoo.list_heads()


@pytest.mark.parametrize("separate", [False, True])
def test_collate_and_tokenizers_survive_save_load(numbers_tsv, tmp_path, separate):
    task = zoo.get_task("translation")
    train = task.datasets(f"tsv:{numbers_tsv}", "train")
    args = train_args(task, [*TINY, "--vocab-size", "60", "--max-len", "6"] + (["--separate-vocab"] if separate else []))
    model = task.build_model(args, train)
    source_tok, target_tok = tokenizers(model)
    assert (source_tok is target_tok) != separate
    assert (model.head.embed.weight is model.backbone.embed.weight) != separate  # joint vocabulary: one embedding
    assert (TARGET_KEY in model.preprocessing) == separate
    long = {"source": "one two three four five six seven eight", "target": "un deux trois quatre cinq six sept huit"}
    batch = task.make_collate(model, train=True)([train[i] for i in range(4)] + [long])
    assert batch["inputs"].shape == (5, 6) and batch["targets"].shape == (5, 5)  # cut to --max-len (target: room for EOS)
    assert batch["mask"].dtype == torch.bool and batch["target_mask"].shape == batch["targets"].shape
    real = batch["targets"][batch["target_mask"]]
    assert not any(t in real.tolist() for t in (target_tok.bos_id, target_tok.eos_id, target_tok.pad_id))
    assert target_tok.decode(batch["targets"][0][batch["target_mask"][0]]) == train[0]["target"]
    model.save(tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    loaded_source, loaded_target = tokenizers(loaded)
    assert loaded_target.proto == target_tok.proto and loaded_source.proto == source_tok.proto
    sentences = ["three hundred", "forty-two"]
    assert translate(loaded, sentences, beams=2) == translate(model.eval(), sentences, beams=2)


def test_scores_use_sacrebleu_scales():
    perfect = scores(["un deux trois quatre", "cinq"], ["un deux trois quatre", "cinq"])
    assert perfect == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0), "exact_match": 1.0}
    partial = scores(["un deux trois cinq", "six"], ["un deux trois quatre", "cinq"])
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100 and partial["exact_match"] == 0.0
    with pytest.raises(ValueError, match="2 hypotheses for 1"):
        scores(["a", "b"], ["a"])


def test_batch_sampler_groups_similar_lengths(numbers_tsv):
    task = zoo.get_task("translation")
    train = task.datasets(f"tsv:{numbers_tsv}", "train")
    batches = list(task.batch_sampler(train, 16, torch.Generator().manual_seed(0), train=True))
    assert sorted(i for b in batches for i in b) == list(range(len(train)))
    length = [len(s) + len(t) for s, t in train.pairs]
    spread = sum(max(length[i] for i in b) - min(length[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches of numbers differ by ~60 characters
    assert task.batch_sampler(train, 16, torch.Generator(), train=False) is None


def test_train_eval_predict_commands(numbers_tsv, tmp_path, capsys):
    task = zoo.get_task("translation")
    run = tmp_path / "run"
    task.command("train", ["--data", f"tsv:{numbers_tsv}", "--out", str(run), "--max-steps", "3", "--batch-size", "8",
                           "--vocab-size", "60", "--no-progress", *TINY])
    assert (run / "best" / "config.json").is_file() and (run / "metrics.jsonl").is_file()
    (samples,) = logged_samples(run)                 # the one evaluation's decoded pairs, in TensorBoard
    source, reference = task.datasets(f"tsv:{numbers_tsv}", "validation").pairs[0]
    assert samples.startswith(f"    {source}\n    -> ") and f"(reference: {reference})" in samples
    capsys.readouterr()
    metrics = task.command("eval", ["--checkpoint", str(run), "--data", f"tsv:{numbers_tsv}", "--split", "test"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == metrics and set(printed) >= {"bleu", "chrf", "exact_match", "split", "n"}
    assert printed["n"] == len(task.datasets(f"tsv:{numbers_tsv}", "test")) and 30 <= printed["n"] <= 70  # ~5% of 1000
    out = task.command("predict", ["--checkpoint", str(run), "--json", "--beams", "2", "one hundred", "seven"])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["input"] for line in lines] == ["one hundred", "seven"] and [line["prediction"] for line in lines] == out
    with pytest.raises(ValueError, match="input 2 is an empty text"):
        task.predict(zoo.load(run / "best"), ["one", "  "])
    tuned = tmp_path / "tuned"  # --init-backbone reuses the donor's encoder and both tokenizers
    task.command("train", ["--data", f"tsv:{numbers_tsv}", "--out", str(tuned), "--max-steps", "1", "--batch-size", "8",
                           "--init-backbone", str(run), "--no-progress"])
    donor, model = zoo.load(run / "best"), zoo.load(tuned / "best")
    assert model.tokenizer.proto == donor.tokenizer.proto
    assert model.backbone.zoo_spec == donor.backbone.zoo_spec


def test_train_refuses_length_mismatched_file_pairs_naming_the_line(tmp_path):
    source, target = tmp_path / "train.en", tmp_path / "train.es"
    source.write_text("one\ntwo\nthree\n", encoding="utf-8")
    target.write_text("un\ndeux\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.es ends after line 2 .* line 3 of .*train\.en has no counterpart"):
        zoo.get_task("translation").command("train", ["--data", f"pairs:{source},{target}", "--out", str(tmp_path / "run")])


def test_bench_workloads_run_one_quick_step():
    task = zoo.get_task("translation")
    pairs = task.bench_workloads(torch.device("cpu"), "fp32", quick=True)
    assert [ours.mode for ours, _ in pairs] == ["train", "inference", "inference"]
    assert pairs[0][1] is not None  # torch.nn.Transformer; the Marian rows need the bench extra (transformers)
    for ours, reference in pairs:
        assert ours.items > 0
        if reference is not None:
            assert (reference.unit, reference.items, reference.mode) == (ours.unit, ours.items, ours.mode)
        for workload in filter(None, (ours, reference)):
            with torch.inference_mode(workload.mode == "inference"):
                workload.step()
        assert ours.factory is not None and ours.factory(2).batch_size == 2


@pytest.mark.slow
def test_learns_held_out_numbers(numbers_tsv, tmp_path):
    """English -> French numbers below 1000: the held-out 5% come out exactly right after ~1 minute of CPU."""
    task = zoo.get_task("translation")
    run = tmp_path / "run"
    task.command("train", ["--data", f"tsv:{numbers_tsv}", "--out", str(run), "--max-steps", "200", "--batch-size", "64",
                           "--lr", "3e-3", "--warmup-steps", "30", "--no-progress",
                           "--backbone-args", '{"dim": 128, "depth": 1, "heads": 2}', "--head-args", '{"depth": 2, "heads": 2}'])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_nll"] < rows[0]["train_nll"] / 5
    assert rows[-1]["val_exact_match"] >= 0.85, rows[-1]
