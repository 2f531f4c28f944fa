"""The text-generation Task: tokenizer, block packing, batches, metrics, save/load, the commands."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

import zoo
from tasks.engine.evaluation import EvalOptions
from tasks.engine.trainer import add_train_arguments
from tasks.text_generation.task import SAMPLE_PROMPT
from tests.text_generation_fixtures import one_thread  # noqa: F401  (autouse)
from tests.test_run_loggers import logged_samples

TINY = json.dumps(dict(dim=32, depth=1, heads=2))
SENTENCES = ["the cat sat on the mat.", "a dog ran to the park.", "my hat is red and old.",
             "we saw the sea at noon.", "it is a truth we all know."]


def corpus(folder: Path, paragraphs: int = 60) -> Path:
    """A small text file of blank-line separated paragraphs cycling through a few sentences."""
    path = folder / "corpus.txt"
    text = "\n\n".join(" ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(3)) for i in range(paragraphs))
    path.write_text(text + "\n")
    return path


def train_args(*argv: str) -> argparse.Namespace:
    """The flags ``zoo train text_generation`` would parse."""
    task = zoo.get_task("text_generation")
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    task.add_arguments(parser)
    parser.set_defaults(backbone="text_decoder_tiny", head="lm")
    return parser.parse_args(list(argv))


@pytest.fixture()
def built(tmp_path: Path):
    """A task, its training blocks and a tiny model built from their documents (tokenizer trained on the text)."""
    task = zoo.get_task("text_generation")
    data = f"text:{corpus(tmp_path)}"
    args = train_args("--data", data, "--vocab-size", "60", "--block-size", "16", "--backbone-args", TINY)
    documents = task.datasets(data, "train")
    model = task.build_model(args, documents).eval()
    return task, task.for_model(documents, model), model, args


def test_blocks_are_the_token_stream_and_batches_are_shifted(built) -> None:
    task, train, model, _ = built
    tokenizer = model.tokenizer
    assert tokenizer.vocab_size <= 60 and model.backbone.embed.num_embeddings == tokenizer.vocab_size
    assert model.preprocessing == {"block_size": 16}
    stream = [token for text in train.texts for token in tokenizer.encode(text) + [tokenizer.eos_id]]
    blocks = torch.stack([train[i]["block"] for i in range(len(train))])  # (N, 17)
    assert blocks.shape == (len(train), 17) and len(train) == (len(stream) - 1) // 16
    assert torch.cat([blocks[:1, 0], blocks[:, 1:].flatten()]).tolist() == stream[:16 * len(train) + 1]
    batch = task.make_collate(model, train=True)([train[0], train[1]])
    assert set(batch) == {"inputs", "targets"}
    assert torch.equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])


def test_bits_per_char_counts_the_characters_of_the_raw_text(built, tmp_path: Path) -> None:
    task, _, model, args = built
    tokenizer = model.tokenizer
    raw = "a  dog\nran   to\u2026"      # folded spaces and line break; NFKC spells "\u2026" "..."
    doc = tokenizer.encode(raw)
    assert tokenizer.decode(doc) == "a dog ran to..."
    one_doc = tmp_path / "one.txt"
    one_doc.write_text(raw)
    dataset = task.datasets(f"text:{one_doc}?sample_by=document", "all")
    assert dataset.texts == [raw]
    metrics = task.evaluate(model, dataset, EvalOptions.from_args(args))

    stream = torch.tensor([doc + [tokenizer.eos_id]])  # one block: the first token is context only
    assert stream.shape[1] <= 17
    with torch.no_grad():
        logits = model({"inputs": stream[:, :-1]})["logits"][0]
    nats = torch.nn.functional.cross_entropy(logits, stream[0, 1:], reduction="sum").item()
    first = tokenizer.sp.id_to_piece(doc[0]).lstrip("\u2581")  # the raw characters of the unscored token
    assert raw.startswith(first) and first
    characters = len(raw) - len(first) + 1  # + the end of the document
    assert metrics["tokens"] == len(doc) and metrics["characters"] == characters
    assert metrics["bits_per_char"] == pytest.approx(nats / math.log(2) / characters, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


def test_save_load_gives_the_same_metrics_and_texts(built, tmp_path: Path) -> None:
    task, _, model, args = built
    model.save(tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    assert loaded.tokenizer.proto == model.tokenizer.proto and loaded.preprocessing == model.preprocessing
    validation = task.datasets(args.data, "validation")
    options = EvalOptions.from_args(args)
    assert task.evaluate(loaded, validation, options) == pytest.approx(task.evaluate(model, validation, options))
    prompts = ["the cat", "we saw the sea at", ""]
    assert loaded.generate_text(prompts, max_new_tokens=6) == model.generate_text(prompts, max_new_tokens=6)


def test_the_task_refuses_a_non_causal_backbone(tmp_path: Path) -> None:
    task = zoo.get_task("text_generation")
    data = f"text:{corpus(tmp_path)}"
    args = train_args("--data", data, "--vocab-size", "60", "--backbone", "text_encoder_tiny", "--backbone-args", TINY)
    with pytest.raises(ValueError, match="causal"):
        task.build_model(args, task.datasets(data, "train"))


def test_train_eval_and_predict_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    task = zoo.get_task("text_generation")
    data = f"text:{corpus(tmp_path)}"
    run = task.command("train", ["--data", data, "--vocab-size", "60", "--block-size", "16", "--batch-size", "8",
                                 "--max-steps", "3", "--backbone", "text_decoder_tiny", "--backbone-args", TINY,
                                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert (run / "best" / "tokenizer.model").is_file()
    (samples,) = logged_samples(run)
    first = task.datasets(data, "validation").texts[0]
    assert samples.startswith(f"    {first[:SAMPLE_PROMPT]}|")
    capsys.readouterr()

    zoo.get_task("text_generation").command("eval", ["--checkpoint", str(run), "--data", data, "--split", "validation"])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"loss", "perplexity", "bits_per_char", "split", "n"} <= set(metrics) and metrics["bits_per_char"] > 0
    blocks = task.for_model(task.datasets(data, "validation"), zoo.load(run))
    assert metrics["n"] == len(blocks) and metrics["tokens"] == 16 * len(blocks)    # n counts the scored blocks

    predict = zoo.get_task("text_generation")
    plain = predict.command("predict", ["--checkpoint", str(run), "the cat", "a dog", "--max-new-tokens", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"the cat{plain[0]}", f"a dog{plain[1]}"]

    streamed = zoo.get_task("text_generation").command(
        "predict", ["--checkpoint", str(run), "the cat", "--max-new-tokens", "5", "--stream"])
    assert streamed == plain[:1] and capsys.readouterr().out == f"the cat{plain[0]}\n"

    zoo.get_task("text_generation").command(
        "predict", ["--checkpoint", str(run), "the cat", "--max-new-tokens", "5", "--json", "--beams", "2"])
    row = json.loads(capsys.readouterr().out)
    assert row["input"] == "the cat" and isinstance(row["prediction"], str)


@pytest.mark.slow
def test_loss_falls_on_a_small_text(tmp_path: Path) -> None:
    task = zoo.get_task("text_generation")
    data = f"text:{corpus(tmp_path, paragraphs=120)}"
    run = task.command("train", ["--data", data, "--vocab-size", "60", "--block-size", "32", "--batch-size", "16",
                                 "--max-steps", "80", "--warmup-steps", "10", "--lr", "1e-2", "--eval-every", "0",
                                 "--backbone", "text_decoder_tiny", "--backbone-args", TINY,
                                 "--out", str(tmp_path / "run"), "--no-progress"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0]["train_loss"], rows[-1]
    assert last["train_loss"] < 0.5 * first
    # five sentences cycling: far better than the ~3 bits per character of guessing letters by frequency
    assert last["val_bits_per_char"] < 1.0
