"""Sentiment task: model building, transfer from a causal LM checkpoint, metrics, predict, save/load, CLI."""
from __future__ import annotations

import argparse
import csv
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import zoo
from tasks.engine.checkpoints import resolve_checkpoint
from tasks.engine.confusion import CONFUSION_JSON, CONFUSION_PNG
from tasks.engine.evaluation import EvalOptions
from tasks.sentiment.task import REGULARIZATION, encode

TINY = {"dim": 32, "depth": 1, "heads": 2}
POSITIVE = ["good", "great", "wonderful", "superb", "charming", "delightful", "brilliant", "moving"]
NEGATIVE = ["bad", "awful", "dull", "boring", "terrible", "tedious", "clumsy", "weak"]
FILLERS = ["the film is", "this movie felt", "a story that is", "the actors were", "the plot seemed",
           "overall it was", "the ending is", "the score sounds"]


def _reviews(n: int, seed: int, positive_share: float = 0.6) -> list[tuple[str, str]]:
    """Synthetic reviews: a neutral opening and two sentiment words of the review's class."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < positive_share
        words = rng.sample(POSITIVE if positive else NEGATIVE, 2)
        rows.append((f"{rng.choice(FILLERS)} {words[0]} and {words[1]}", "positive" if positive else "negative"))
    return rows


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _args(**overrides) -> argparse.Namespace:
    """The namespace build_model sees from `zoo train sentiment` (tiny backbone)."""
    values = dict(init_backbone=None, backbone="text_encoder_tiny", backbone_args=dict(TINY), head="classification",
                  head_args=None, vocab_size=64, max_len=32, token_dropout=0.0, batch_size=16, precision="fp32",
                  out=None)
    return argparse.Namespace(**{**values, **overrides})


@pytest.fixture(scope="module")
def task():
    return zoo.get_task("sentiment")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sentiment")
    return {"train": _write_csv(folder / "train.csv", _reviews(400, seed=1)),
            "test": _write_csv(folder / "test.csv", _reviews(120, seed=2))}


@pytest.fixture(scope="module")
def train_set(task, files):
    return task.datasets(f"csv:{files['train']}", "train")


@pytest.fixture(scope="module")
def model(task, train_set):
    torch.manual_seed(0)
    return task.build_model(_args(), train_set).eval()


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory, train_set) -> Path:
    """A stand-in for a text-generation run: a causal decoder + LM head with its own tokenizer."""
    folder = tmp_path_factory.mktemp("lm")
    tokenizer = zoo.Tokenizer.train([s["text"] for s in train_set] + ["some other words entirely"], vocab_size=60)
    torch.manual_seed(1)
    lm = zoo.create_model("text_decoder_tiny", "lm", backbone_args={**TINY, "vocab_size": tokenizer.vocab_size},
                          tokenizer=tokenizer, task="text_generation")
    lm.save(folder / "step-5")
    (folder / "best").symlink_to("step-5")
    return folder


# ---- model -------------------------------------------------------------------------------------

def test_build_model_trains_tokenizer_and_stores_labels(model, train_set):
    assert model.head.labels == ["negative", "positive"] and model.task == "sentiment"
    assert model.backbone.cfg.vocab_size == model.tokenizer.vocab_size <= 64
    assert model.backbone.cfg.dim == 32 and not model.backbone.causal and model.head.pooling == "mean"
    assert model.preprocessing == {"max_len": 32, "eos": False, "token_dropout": 0.0}
    assert model.backbone.cfg.position == "learned" and model.backbone.cfg.max_len == 32   # the task's defaults
    assert model.backbone.cfg.dropout == model.head.drop.p == REGULARIZATION["dropout"]


def test_collate_and_length_batches(task, model, train_set):
    batches = list(task.batch_sampler(train_set, 16, torch.Generator().manual_seed(0), train=True))
    assert sorted(i for b in batches for i in b) == list(range(len(train_set)))
    assert task.batch_sampler(train_set, 16, torch.Generator(), train=False) is None
    batch = task.make_collate(model, train=True)([train_set[i] for i in batches[0]])
    assert batch["inputs"].shape == batch["mask"].shape and batch["inputs"].dtype == torch.long
    assert batch["labels"].tolist() == [train_set[i]["label"] for i in batches[0]]
    assert batch["mask"][:, 0].all() and (batch["inputs"][~batch["mask"]] == 0).all()


def test_token_dropout_hides_tokens_only_while_training(task, train_set):
    torch.manual_seed(0)
    model = task.build_model(_args(token_dropout=0.5), train_set)
    samples = [train_set[i] for i in range(64)]
    clean = task.make_collate(model, train=False)(samples)
    noisy = task.make_collate(model, train=True)(samples)
    assert torch.equal(noisy["mask"], clean["mask"]) and torch.equal(noisy["labels"], clean["labels"])
    hidden = noisy["inputs"] != clean["inputs"]
    assert (noisy["inputs"][hidden] == model.tokenizer.unk_id).all() and not hidden[~clean["mask"]].any()
    assert 0.35 < hidden.sum() / clean["mask"].sum() < 0.65


def test_init_backbone_reuses_architecture_tokenizer_and_weights(task, train_set, lm_checkpoint):
    model = task.build_model(_args(init_backbone=str(lm_checkpoint), backbone=None, backbone_args=None), train_set)
    source = resolve_checkpoint(lm_checkpoint)
    stored_cfg = zoo.load(source).backbone.cfg
    assert model.backbone.causal and model.backbone.cfg == replace(stored_cfg, **REGULARIZATION)  # + dropout
    assert model.tokenizer.proto == (source / "tokenizer.model").read_bytes()
    assert model.head.pooling == "last" and model.preprocessing["eos"] is True
    ids, mask = encode(model, ["good and great " * 40, "dull"])        # the last token read is always EOS
    assert ids.shape == (2, 32) and ids[0, -1] == ids[1, mask[1].sum() - 1] == model.tokenizer.eos_id
    report = model.load_backbone_from(source)          # what the trainer does next
    assert not report.skipped and not report.missing
    stored = zoo.load(source).backbone.state_dict()
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, stored[name]), name


def test_init_backbone_refuses_another_backbone(task, train_set, lm_checkpoint):
    with pytest.raises(ValueError, match="conflicts with --pretrained"):
        task.build_model(_args(init_backbone=str(lm_checkpoint), backbone="text_encoder_base"), train_set)


def test_train_frozen_transferred_backbone_changes_only_the_head(task, files, lm_checkpoint, tmp_path):
    run = task.command("train", ["--data", f"csv:{files['train']}", "--out", str(tmp_path / "run"),
                                 "--init-backbone", str(lm_checkpoint), "--freeze-backbone", "--max-steps", "3",
                                 "--checkpoint-every", "1", "--lr", "0.05", "--warmup-steps", "1",
                                 "--device", "cpu", "--no-progress"])
    source = zoo.load(resolve_checkpoint(lm_checkpoint)).state_dict()
    step2, step3 = zoo.load(run / "step-2").state_dict(), zoo.load(run / "step-3").state_dict()
    backbone = [name for name in step3 if name.startswith("backbone.")]
    assert backbone and all(torch.equal(step3[n], source[n]) and torch.equal(step2[n], source[n]) for n in backbone)
    assert not torch.equal(step2["head.fc.weight"], step3["head.fc.weight"])


# ---- evaluation and prediction ---------------------------------------------------------------------

def test_evaluate_metrics_and_confusion_matrix(task, model, files, tmp_path):
    dataset = task.datasets(f"csv:{files['test']}", "all")
    result = task.evaluate(model, dataset, EvalOptions(batch_size=16, out=tmp_path))
    predicted = [p["label"] for p in task.predict(model, [s["text"] for s in dataset])]
    truth = [dataset.classes[s["label"]] for s in dataset]
    assert result["accuracy"] == pytest.approx(sum(p == t for p, t in zip(predicted, truth)) / len(truth))
    assert 0.0 <= result["macro_f1"] <= 1.0 and result["loss"] > 0
    confusion = json.loads((tmp_path / CONFUSION_JSON).read_text())
    assert confusion["labels"] == ["negative", "positive"]
    matrix = confusion["matrix"]
    assert sum(map(sum, matrix)) == len(dataset)
    assert [sum(row) for row in matrix] == [truth.count("negative"), truth.count("positive")]
    assert (tmp_path / CONFUSION_PNG).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_maps_classes_by_name(task, model, tmp_path):
    flipped = _write_csv(tmp_path / "f.csv", [("great and good", "positive"), ("bad and dull", "negative")])
    dataset = task.datasets(f"csv:{flipped}?classes=positive,negative", "all")
    by_name = task.evaluate(model, dataset, EvalOptions(batch_size=16))
    plain = task.evaluate(model, task.datasets(f"csv:{flipped}", "all"), EvalOptions(batch_size=16))
    assert by_name == plain
    odd = _write_csv(tmp_path / "o.csv", [("fine", "neutral"), ("bad", "negative")])
    with pytest.raises(ValueError, match=r"\['neutral'\] are not among the model's labels"):
        task.evaluate(model, task.datasets(f"csv:{odd}", "all"), EvalOptions(batch_size=16))


def test_predict_api(task, model):
    texts = ["a wonderful and superb film", "dull", "a wonderful and superb film"]
    results = task.predict(model, texts, batch_size=2)
    assert len(results) == 3 and results[0]["label"] == results[2]["label"]
    assert results[0]["probability"] == pytest.approx(results[2]["probability"], abs=1e-5)  # other padding
    for result in results:
        assert set(result["probabilities"]) == {"negative", "positive"}
        assert sum(result["probabilities"].values()) == pytest.approx(1.0)
        assert result["probability"] == max(result["probabilities"].values())
        assert result["label"] in ("negative", "positive")
    line = task.format_prediction(texts[1], results[1])
    assert line.split("\t")[0] == results[1]["label"] and line.endswith("\tdull")
    with pytest.raises(ValueError, match="input 2 is an empty text"):
        task.predict(model, ["fine", "  "])


def test_save_load_same_predictions(task, model, tmp_path):
    texts = ["the plot seemed brilliant and moving", "overall it was clumsy and weak", "the film is"]
    model.save(tmp_path / "m")
    loaded = zoo.load(tmp_path / "m")
    assert loaded.head.labels == model.head.labels and loaded.preprocessing == model.preprocessing
    assert task.predict(loaded, texts) == task.predict(model, texts)


# ---- the commands ---------------------------------------------------------------------------------

@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine it can cost 5x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_learns_then_eval_and_predict_commands(task, files, tmp_path, capsys, one_thread):
    run = task.command("train", ["--data", f"csv:{files['train']}", "--out", str(tmp_path / "run"),
                                 "--backbone", "text_encoder_tiny", "--backbone-args", json.dumps(TINY),
                                 "--vocab-size", "64", "--max-steps", "60", "--batch-size", "16",
                                 "--lr", "3e-3", "--eval-every", "30", "--device", "cpu", "--no-progress"])
    assert (run / CONFUSION_JSON).is_file() and (run / CONFUSION_PNG).is_file() and (run / "curves.png").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    capsys.readouterr()
    result = task.command("eval", ["--checkpoint", str(run), "--data", f"csv:{files['test']}",
                                   "--out", str(tmp_path / "eval"), "--device", "cpu"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    test_set = task.datasets(f"csv:{files['test']}", "all")
    majority = max(sum(s["label"] == c for s in test_set) for c in (0, 1)) / len(test_set)
    assert result["n"] == len(test_set) and result["accuracy"] >= majority + 0.25
    assert (tmp_path / "eval" / CONFUSION_JSON).is_file()

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("the ending is superb and charming\n\noverall it was tedious and awful\n", encoding="utf-8")
    predictions = task.command("predict", ["--checkpoint", str(run), "the film is great and wonderful",
                                           "--input-file", str(inputs), "--device", "cpu"])
    assert [p["label"] for p in predictions] == ["positive", "positive", "negative"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["positive", "positive", "negative"]
    assert all(0.5 <= float(line.split("\t")[1]) <= 1.0 for line in lines)
    task.command("predict", ["--checkpoint", str(run), "dull and boring", "--json", "--device", "cpu"])
    shown = json.loads(capsys.readouterr().out.strip())
    assert shown["input"] == "dull and boring" and shown["prediction"]["label"] == "negative"


def test_builtin_data_is_the_default(task, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="zoo data prepare sentiment"):
        task.datasets("builtin", "train")
    assert task.quick_data == "builtin:default" and task.quick_set in task.builtin_sets and task.metric.name == "accuracy"
