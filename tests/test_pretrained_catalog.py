"""Named pretrained weights (the catalog), the Hugging Face tokenizer kind and ``zoo train --pretrained``.

Nothing is fetched: a fake WordLlama-like wheel (a 50 x 16 table and a tiny tokenizers JSON) is
built here and handed to ``zoo weights prepare`` in place of ``pip download``; the transformers
source is a tiny random BERT saved with ``save_pretrained``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers

import zoo
from zoo import checkpoint, cli
from tests.format1_fixture import format1_folder
from zoo.errors import ZooError
from zoo.pretrained import catalog
from zoo.tokenizer import HFTokenizer

FIXTURE = format1_folder()   # the folder format-1 code saved (tests/format1_fixture.py)
WORDS = ["good", "bad", "film", "plot", "dull", "fun", "great", "awful", "a", "the", "was", "and"]
TEXT = "a good film and the plot was dull"


def _tokenizer_json(specials: list[str], size: int) -> str:
    """A word-level tokenizers JSON: ``specials`` first, then WORDS, padded with filler words to ``size``."""
    words = specials + WORDS + [f"w{i}" for i in range(size - len(specials) - len(WORDS))]
    unk = next(s for s in specials if "unk" in s.lower())
    backend = Backend(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(specials)
    return backend.to_str()


@pytest.fixture
def wheel(tmp_path, monkeypatch) -> dict:
    """A fake wordllama wheel served by a fake ``pip download``; ZOO_DATA in a temp folder."""
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "data"))
    table = torch.randn(50, 16, generator=torch.Generator().manual_seed(0)).half()
    save_file({"embedding.weight": table}, str(tmp_path / "table.safetensors"))
    path = tmp_path / "wordllama-0.4.0.post1-py3-none-any.whl"
    files = {**{theirs: f"{ours} text".encode() for ours, theirs in catalog._WORDLLAMA_FILES.items()},
             catalog._WORDLLAMA_FILES["embedding.safetensors"]: (tmp_path / "table.safetensors").read_bytes(),
             catalog._WORDLLAMA_FILES["tokenizer.json"]: _tokenizer_json(["<unk>", "<s>", "</s>"], 50).encode()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    calls = []

    def download(requirement: str, folder: Path) -> Path:
        calls.append(requirement)
        return Path(shutil.copy(path, folder))

    monkeypatch.setattr(catalog, "download_wheel", download)
    return {"table": table, "calls": calls, "path": path, "files": files}


def test_prepare_writes_the_files_and_a_card_with_their_sha256(wheel, capsys):
    cli.main(["weights", "prepare", "wordllama"])
    folder = catalog.weights_root() / "wordllama"
    assert capsys.readouterr().out.strip() == f"wordllama: {folder}"
    card = json.loads((folder / "card.json").read_text())
    assert card["files"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                             for p in folder.iterdir() if p.name != "card.json"}
    assert set(card["files"]) == {"embedding.safetensors", "tokenizer.json", "LICENSE", "RESULTS.md"}
    assert card["architecture"] == {"kind": "token_embedding", "file": "embedding.safetensors",
                                    "tensor": "embedding.weight", "vocab_size": 50, "dim": 16,
                                    "tokenizer": "tokenizer.json"}
    assert {"source", "licence", "trained_on", "results"} <= set(card) and "wordllama==0.4.0.post1" in card["source"]
    assert torch.equal(load_file(str(folder / "embedding.safetensors"))["embedding.weight"], wheel["table"])
    catalog.prepare("wordllama")                    # prepared: nothing fetched again
    catalog.prepare("wordllama", force=True)
    assert wheel["calls"] == ["wordllama==0.4.0.post1"] * 2
    cli.main(["list", "weights"])
    assert capsys.readouterr().out.startswith("wordllama  prepared  token_embedding 50 x 16  licence=MIT")


def test_a_failed_prepare_leaves_no_half_folder_and_keeps_the_previous_one(wheel):
    folder = catalog.prepare("wordllama")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with zipfile.ZipFile(wheel["path"], "w") as archive:      # a wheel that lost its tokenizer
        archive.writestr(catalog._WORDLLAMA_FILES["embedding.safetensors"],
                         wheel["files"][catalog._WORDLLAMA_FILES["embedding.safetensors"]])
    with pytest.raises(ZooError, match="has no wordllama/tokenizers/l2_supercat_tokenizer_config.json"):
        catalog.prepare("wordllama", force=True)
    assert [p.name for p in catalog.weights_root().iterdir()] == ["wordllama"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before and catalog.resolve("wordllama")


def test_a_missing_entry_names_the_command_that_prepares_it(wheel, capsys):
    with pytest.raises(FileNotFoundError, match=r"run `zoo weights prepare wordllama` \(or `make weights`\)"):
        zoo.create_model(pretrained="wordllama", head="classification", num_classes=2)
    cli.main(["list", "weights"])
    assert "not prepared" in capsys.readouterr().out and wheel["calls"] == []
    with pytest.raises(SystemExit):
        cli.main(["weights", "prepare", "wordlama"])
    assert "did you mean 'wordllama'" in capsys.readouterr().err and wheel["calls"] == []


def test_a_changed_file_is_refused_by_its_sha256(wheel):
    folder = catalog.prepare("wordllama")
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text() + " ")
    with pytest.raises(ZooError, match=r"tokenizer.json: sha256 differs .*zoo weights prepare wordllama --force"):
        zoo.create_model(pretrained="wordllama", head="classification", num_classes=2)


def test_wordllama_builds_an_encoder_as_wide_as_the_table_with_its_tokenizer(wheel, tmp_path):
    catalog.prepare("wordllama")
    model = zoo.create_model(pretrained="wordllama", head="classification", num_classes=2)
    assert model.backbone.dim == 16 and model.backbone.zoo_spec["name"] == "text_encoder_tiny"
    torch.testing.assert_close(model.backbone.embed.weight.detach(), wheel["table"].float(), rtol=0, atol=0)
    assert model.pretrained_report.loaded == ["backbone.embed.weight"]
    reference = Backend.from_file(str(catalog.weights_root() / "wordllama" / "tokenizer.json"))
    assert model.tokenizer.encode(TEXT) == reference.encode(TEXT, add_special_tokens=False).ids
    assert model.tokenizer.encode(TEXT)[:3] == [3 + WORDS.index(w) for w in ("a", "good", "film")]
    model.save(tmp_path / "saved")
    loaded = zoo.load(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert (config["format_version"], config["tokenizer"], config["tokenizer_kind"]) == (2, "tokenizer.json",
                                                                                      "tokenizers")
    ids, mask = loaded.tokenizer.batch([TEXT, "bad fun"])
    assert ids.tolist() == model.eval().tokenizer.batch([TEXT, "bad fun"])[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(loaded({"inputs": ids, "mask": mask})["logits"],
                                   model({"inputs": ids, "mask": mask})["logits"])
    with pytest.raises(ZooError, match="conflict with 'wordllama'"):
        zoo.create_model(pretrained="wordllama", backbone_args={"dim": 32}, num_classes=2)


def test_hf_tokenizer_special_ids_decode_and_refusals(tmp_path):
    bert_like = HFTokenizer(_tokenizer_json(["[PAD]", "[UNK]", "[CLS]", "[SEP]"], 30))
    assert (bert_like.pad_id, bert_like.unk_id, bert_like.bos_id, bert_like.eos_id) == (0, 1, 2, 3)
    ids = bert_like.encode("good zzz film", bos=True, eos=True)
    assert ids == [2, 4 + WORDS.index("good"), 1, 4 + WORDS.index("film"), 3]
    assert bert_like.decode(ids) == "good film"
    llama_like = HFTokenizer(_tokenizer_json(["<unk>", "<s>", "</s>"], 30))
    assert llama_like.pad_id == llama_like.eos_id == 2      # no pad token: EOS pads, the mask hides it
    with pytest.raises(ZooError, match="no bos token"):
        HFTokenizer(_tokenizer_json(["<unk>", "</s>"], 30))
    with pytest.raises(ZooError, match="not a tokenizers JSON"):
        HFTokenizer("{}")


def test_a_format_1_checkpoint_migrates_to_a_sentencepiece_tokenizer_kind():
    config = checkpoint.read_config(FIXTURE)
    assert json.loads((FIXTURE / "config.json").read_text())["format_version"] == 1
    assert (config["format_version"], config["tokenizer_kind"]) == (2, "sentencepiece")
    assert zoo.load(FIXTURE).tokenizer.kind == "sentencepiece"


# ---- zoo train TASK --pretrained ------------------------------------------------------------------

def _reviews(path: Path) -> Path:
    rows = [("a good fun film", "positive"), ("a bad dull plot", "negative")] * 20
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def _train(tmp_path: Path, *flags: str) -> Path:
    out = tmp_path / "run"
    cli.main(["train", "sentiment", "--data", f"csv:{_reviews(tmp_path / 'reviews.csv')}", "--out", str(out),
              "--max-steps", "2", "--device", "cpu", "--no-progress", *flags])
    return out


def test_train_sentiment_with_wordllama_frozen_embedding_keeps_the_table(wheel, tmp_path, capsys):
    catalog.prepare("wordllama")
    run = _train(tmp_path, "--pretrained", "wordllama", "--freeze-embedding", "--checkpoint-every", "1")
    assert "backbone from wordllama: loaded 1 tensors" in capsys.readouterr().out
    model = zoo.load(run / "step-2")
    torch.testing.assert_close(model.backbone.embed.weight, wheel["table"].float(), rtol=0, atol=0)
    assert model.tokenizer.kind == "tokenizers" and model.backbone.dim == 16
    step1, step2 = zoo.load(run / "step-1").state_dict(), model.state_dict()
    moved = [n for n in step2 if not torch.equal(step1[n], step2[n])]
    assert "backbone.stack.blocks.0.attn.qkv.weight" in moved and "backbone.embed.weight" not in moved


def _bert_folder(folder: Path, tokenizer: bool = True) -> Path:
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder, safe_serialization=True)
    if tokenizer:
        (folder / "tokenizer.json").write_text(_tokenizer_json(["[PAD]", "[UNK]", "[CLS]", "[SEP]"], 40))
    return folder


def test_train_sentiment_from_a_transformers_bert_folder_uses_its_weights_and_tokenizer(tmp_path, capsys):
    bert = _bert_folder(tmp_path / "bert")
    model = zoo.load(_train(tmp_path, "--pretrained", str(bert), "--freeze-embedding") / "last")
    stored = load_file(str(bert / "model.safetensors"))
    torch.testing.assert_close(model.backbone.model.get_input_embeddings().weight,
                               stored["embeddings.word_embeddings.weight"], rtol=0, atol=0)   # frozen: as stored
    pooler = [n for n in stored if n.startswith("pooler.")]       # zoo keeps the hidden states, not the pooler
    assert (f"backbone from {bert}: loaded {len(stored) - len(pooler)} tensors, skipped {len(pooler)} "
            f"(not used by zoo), 2 missing") in capsys.readouterr().out and pooler   # the new head.fc
    assert model.backbone.zoo_spec["name"] == "transformers" and model.backbone.family == "bert"
    reference = Backend.from_file(str(bert / "tokenizer.json"))
    assert model.tokenizer.encode(TEXT) == reference.encode(TEXT, add_special_tokens=False).ids
    assert model.preprocessing["max_len"] == 128


def test_train_pretrained_is_checked_before_any_work(wheel, tmp_path, capsys):
    cases = [(["--pretrained", "wordlama"], "did you mean 'wordllama'"),
             (["--init-backbone", "wordllama"], "run `zoo weights prepare wordllama`"),
             (["--pretrained", str(_bert_folder(tmp_path / "bare", tokenizer=False))], "brings no tokenizer")]
    for flags, message in cases:
        with pytest.raises(SystemExit):
            _train(tmp_path, *flags)
        assert message in capsys.readouterr().err
    catalog.prepare("wordllama")
    with pytest.raises(SystemExit):
        cli.main(["train", "image_classification", "--pretrained", "wordllama", "--out", str(tmp_path / "img")])
    assert "the image_classification task starts from a zoo run or model folder" in capsys.readouterr().err
