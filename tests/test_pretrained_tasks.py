"""``zoo train TASK --pretrained SOURCE`` for every task: tiny random sources saved as users would, no downloads.

Each test saves a tiny random transformers/timm/torchaudio model (safetensors) into ``tmp_path``,
trains two steps on the task's tiny fixture (the backbone frozen where a head has weights of its
own), and checks that the run's
model holds the source's tensors, that the task used the source's tokenizer or preprocessing,
and that ``zoo.load`` of the run scores the validation split exactly as the trainer did in memory.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import timm
import torch
import torchaudio
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, pre_tokenizers, trainers
from zoo.tokenizer import HFTokenizer

import zoo
from tasks.engine import trainer
from tasks.engine.evaluation import EvalOptions
from zoo import cli
from tests.test_task_contract import FIXTURES

pytestmark = pytest.mark.usefixtures("one_thread")

TORCHAUDIO_ARGS = dict(extractor_mode="group_norm", extractor_conv_layer_config=[[8, 10, 5], [8, 4, 4]],
                       extractor_conv_bias=False, encoder_embed_dim=16, encoder_projection_dropout=0.0,
                       encoder_pos_conv_kernel=8, encoder_pos_conv_groups=2, encoder_num_layers=1,
                       encoder_num_heads=2, encoder_attention_dropout=0.0, encoder_ff_interm_features=32,
                       encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=False,
                       encoder_layer_drop=0.0, aux_num_out=None)


@pytest.fixture(autouse=True)
def _quiet_transformers():
    transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def trained(monkeypatch) -> dict[str, torch.nn.Module]:
    """``trained["model"]``: a copy of the last run's model as it was in memory at the end, with the
    weights it saved (the EMA when on)."""
    captured: dict[str, torch.nn.Module] = {}
    run = trainer._Run.run

    def spy(self) -> Path:
        folder = run(self)
        with self._ema_weights():
            captured["model"] = copy.deepcopy(self.model).eval()
        return folder

    monkeypatch.setattr(trainer._Run, "run", spy)
    return captured


def _train(task: str, tmp_path: Path, source: Path, *flags: str, freeze: bool = True) -> tuple[Path, str]:
    """Two steps of ``zoo train task --pretrained source`` on its fixture (the backbone frozen unless
    ``freeze`` is False): (run, data SPEC)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec, _ = FIXTURES[task].write(tmp_path)
    out = tmp_path / "run"
    cli.main(["train", task, "--data", spec, "--pretrained", str(source), "--out", str(out), "--max-steps", "2",
              "--device", "cpu", "--precision", "fp32", "--no-progress", *(["--freeze-backbone"] if freeze else []), *flags])
    return out, spec


def _assert_reloaded_scores_as_trained(task_name: str, run: Path, spec: str,
                                       trained: dict[str, torch.nn.Module]) -> zoo.ZooModel:
    """``zoo.load(run / "last")`` gives the trained model's outputs on a validation batch, and the
    validation metrics the trainer logged at its last step."""
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    task = zoo.get_task(task_name)
    model = zoo.load(run / "last").eval()
    validation = task.for_model(task.datasets(spec, "validation"), model)
    batch = task.make_collate(model, train=False)([validation[i] for i in range(min(4, len(validation)))])
    with torch.no_grad():
        expected, got = trained["model"](batch), model(batch)
    compared = [k for k, v in expected.items() if torch.is_tensor(v)]
    assert compared
    for key in compared:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    metrics = task.evaluate(model, validation, EvalOptions(batch_size=8))
    for name, value in metrics.items():
        if isinstance(value, float):
            assert logged[f"val_{name}"] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    return model


# ---- text generation: a transformers GPT-2 folder and its tokenizer.json ------------------------------

def _gpt2_folder(folder: Path, texts: list[str], tokenizer: bool = True) -> Path:
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    config = transformers.GPT2Config(vocab_size=max(300, backend.get_vocab_size()), n_positions=32, n_embd=16,
                                     n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    if tokenizer:
        backend.save(str(folder / "tokenizer.json"))
    return folder


def test_text_generation_from_a_gpt2_folder_tokenizes_with_its_tokenizer(tmp_path, trained):
    (tmp_path / "data").mkdir()
    spec, _ = FIXTURES["text_generation"].write(tmp_path / "data")
    task = zoo.get_task("text_generation")
    texts = task.datasets(spec, "train").texts
    gpt2 = _gpt2_folder(tmp_path / "gpt2", texts)
    # the lm head is tied to the embedding: nothing is left to train when the backbone freezes. Without
    # weight decay, positions past the 16-token blocks get no update and stay as the folder holds them.
    run, spec = _train("text_generation", tmp_path, gpt2, "--block-size", "16", "--weight-decay", "0", freeze=False)
    model = _assert_reloaded_scores_as_trained("text_generation", run, spec, trained)
    stored = load_file(str(gpt2 / "model.safetensors"))
    assert model.backbone.zoo_spec["name"] == "text_decoder_gpt2"
    torch.testing.assert_close(model.backbone.pos_embed.weight[16:], stored["transformer.wpe.weight"][16:],
                               rtol=0, atol=0)
    assert not torch.equal(model.backbone.embed.weight, stored["transformer.wte.weight"])   # it did train
    reference = Backend.from_file(str(gpt2 / "tokenizer.json"))
    assert model.tokenizer.kind == "tokenizers"
    blocks = task.for_model(task.datasets(spec, "train"), model)      # packed with the model's tokenizer
    first = reference.encode(blocks.texts[0], add_special_tokens=False).ids
    assert blocks[0]["block"][:8].tolist() == first[:8]
    assert task.predict(model, ["the cat"], max_new_tokens=3) == task.predict(zoo.load(run / "last"), ["the cat"],
                                                                                 max_new_tokens=3)


# ---- image classification: a transformers ViT folder with its image processor -------------------------

def test_image_classification_from_a_transformers_vit_uses_its_size_and_statistics(tmp_path, trained):
    config = transformers.ViTConfig(image_size=24, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=2)
    folder = tmp_path / "vit"
    transformers.ViTForImageClassification(config).save_pretrained(folder, safe_serialization=True)
    mean, std = [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]
    transformers.ViTImageProcessor(image_mean=mean, image_std=std, size=24).save_pretrained(folder)
    run, spec = _train("image_classification", tmp_path, folder)
    model = _assert_reloaded_scores_as_trained("image_classification", run, spec, trained)
    stored = load_file(str(folder / "model.safetensors"))
    torch.testing.assert_close(model.backbone.patch_embed.proj.weight,
                               stored["vit.embeddings.patch_embeddings.projection.weight"], rtol=0, atol=0)
    transform = model.preprocessing["transform"]
    assert (transform["image_size"], transform["mean"], transform["std"]) == (24, mean, std)
    assert model.head.fc.weight.shape == stored["classifier.weight"].shape   # two classes: the classifier reused


def test_image_classification_from_a_timm_hub_folder_takes_its_statistics_and_a_new_head(tmp_path, trained):
    from timm.models import save_for_hf

    args = dict(img_size=16, patch_size=8, depth=1, num_heads=2, embed_dim=16)
    reference = timm.create_model("vit_tiny_patch16_224", num_classes=5, **args)
    save_for_hf(reference, str(tmp_path / "timm"), model_args=args, safe_serialization=True)
    run, spec = _train("image_classification", tmp_path, tmp_path / "timm")
    model = _assert_reloaded_scores_as_trained("image_classification", run, spec, trained)
    torch.testing.assert_close(model.backbone.pos_embed, reference.pos_embed, rtol=0, atol=0)
    transform = model.preprocessing["transform"]
    assert (transform["image_size"], transform["mean"]) == (16, list(reference.pretrained_cfg["mean"]))
    assert model.head.fc.weight.shape == (2, 16)   # the fixture's two classes: a new head, not timm's five


# ---- asr: a transformers wav2vec2 folder, a Whisper encoder, a torchaudio file -----------------------

def _wav2vec2_folder(folder: Path) -> Path:
    config = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4),
                                         conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                                         num_conv_pos_embedding_groups=2, feat_extract_norm="layer")
    transformers.Wav2Vec2Model(config).save_pretrained(folder, safe_serialization=True)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def test_asr_from_a_wav2vec2_folder_reads_16khz_and_normalises_as_its_extractor_says(tmp_path, trained):
    folder = _wav2vec2_folder(tmp_path / "w2v")
    run, spec = _train("asr", tmp_path, folder)
    model = _assert_reloaded_scores_as_trained("asr", run, spec, trained)
    stored = load_file(str(folder / "model.safetensors"))
    name = "feature_extractor.conv_layers.0.conv.weight"
    torch.testing.assert_close(model.backbone.model.state_dict()[name], stored[name], rtol=0, atol=0)
    assert model.backbone.family == "wav2vec2" and model.backbone.normalize
    assert model.preprocessing["sample_rate"] == 16000 and model.head.zoo_spec["name"] == "ctc"


def test_asr_from_a_whisper_folder_keeps_its_encoder(tmp_path, trained):
    config = transformers.WhisperConfig(vocab_size=40, num_mel_bins=16, d_model=16, encoder_layers=1,
                                        decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                                        encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=50,
                                        max_target_positions=16, pad_token_id=39, bos_token_id=38,
                                        eos_token_id=38, decoder_start_token_id=37)
    folder = tmp_path / "whisper"
    transformers.WhisperModel(config).save_pretrained(folder, safe_serialization=True)
    run, spec = _train("asr", tmp_path, folder)
    model = _assert_reloaded_scores_as_trained("asr", run, spec, trained)
    stored = load_file(str(folder / "model.safetensors"))
    torch.testing.assert_close(model.backbone.model.conv1.weight, stored["encoder.conv1.weight"], rtol=0, atol=0)
    assert model.backbone.family == "whisper" and model.preprocessing["sample_rate"] == 16000


def test_asr_from_a_torchaudio_file_needs_and_uses_the_named_factory(tmp_path, capsys, trained):
    reference = torchaudio.models.wav2vec2_model(**TORCHAUDIO_ARGS)
    path = tmp_path / "w2v.safetensors"
    save_file(reference.state_dict(), str(path))
    with pytest.raises(SystemExit):
        _train("asr", tmp_path / "bare", path)
    assert "pass --backbone torchaudio/<factory>" in capsys.readouterr().err
    assert not (tmp_path / "bare" / "run").exists()
    run, spec = _train("asr", tmp_path, path, "--backbone", "torchaudio/wav2vec2_model",
                       "--backbone-args", json.dumps(TORCHAUDIO_ARGS))
    model = _assert_reloaded_scores_as_trained("asr", run, spec, trained)
    name = "encoder.transformer.layers.0.attention.k_proj.weight"
    torch.testing.assert_close(model.backbone.model.state_dict()[name], reference.state_dict()[name],
                               rtol=0, atol=0)


# ---- detection: a timm ViT file under the FCOS head -----------------------------------------------------

def test_detection_from_a_timm_vit_file_feeds_its_pyramid_to_the_head(tmp_path, trained):
    reference = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=0)
    path = tmp_path / "vit.safetensors"
    save_file(reference.state_dict(), str(path))
    run, spec = _train("detection", tmp_path, path, "--head", "fcos", "--head-args", '{"dim": 16, "tower_depth": 1}',
                       "--transform", '{"size": 48, "scale_range": [1.0, 1.0], "color_jitter": 0}')
    model = _assert_reloaded_scores_as_trained("detection", run, spec, trained)
    torch.testing.assert_close(model.backbone.stack.blocks[0].attn.qkv.weight,
                               reference.state_dict()["blocks.0.attn.qkv.weight"], rtol=0, atol=0)
    features = model.backbone(torch.zeros(1, 3, 32, 32))
    assert [m.shape[-1] for m in features.maps] == [4, 2, 1]   # strides 8, 16, 32
    assert model.preprocessing["mean"] == list(timm.data.IMAGENET_DEFAULT_MEAN)


# ---- translation: a transformers Marian folder, its encoder under our seq2seq head ----------------------

def _marian_folder(folder: Path, texts: list[str] | None = None) -> Path:
    words = sorted({w for text in texts or [] for w in text.split()})
    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>", *words])}
    config = transformers.MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                       decoder_ffn_dim=32, max_position_embeddings=32, pad_token_id=0,
                                       decoder_start_token_id=0)
    transformers.MarianMTModel(config).save_pretrained(folder, safe_serialization=True)
    if texts is not None:
        backend = Backend(models.WordLevel(vocab, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.save(str(folder / "tokenizer.json"))
    return folder


def test_translation_from_a_marian_folder_reads_both_sides_with_its_tokenizer(tmp_path, trained):
    (tmp_path / "data").mkdir()
    spec, _ = FIXTURES["translation"].write(tmp_path / "data")
    pairs = zoo.get_task("translation").datasets(spec, "train")
    texts = [pairs[i][side] for i in range(len(pairs)) for side in ("source", "target")]
    marian = _marian_folder(tmp_path / "marian", texts)
    run, spec = _train("translation", tmp_path, marian, "--eval-beams", "1", "--head-args",
                       '{"depth": 1, "heads": 2}')
    model = _assert_reloaded_scores_as_trained("translation", run, spec, trained)
    stored = load_file(str(marian / "model.safetensors"))
    torch.testing.assert_close(model.backbone.model.layers[0].fc1.weight, stored["model.encoder.layers.0.fc1.weight"],
                               rtol=0, atol=0)
    assert model.backbone.family == "marian" and model.tokenizer.kind == "tokenizers"
    batch = zoo.get_task("translation").make_collate(model, train=False)([pairs[0]])
    expected = Backend.from_file(str(marian / "tokenizer.json"))
    assert batch["inputs"][0].tolist() == expected.encode(pairs[0]["source"], add_special_tokens=False).ids
    assert batch["targets"][0].tolist() == expected.encode(pairs[0]["target"], add_special_tokens=False).ids
    assert "target_tokenizer" not in model.preprocessing     # one tokenizer, both sides


# ---- refusals, before any work ---------------------------------------------------------------------------

def test_sources_a_task_does_not_take_are_refused_naming_what_it_takes(tmp_path, capsys):
    marian = _marian_folder(tmp_path / "marian")
    wav2vec2 = _wav2vec2_folder(tmp_path / "w2v")
    cases = [("translation", wav2vec2, "is a transformers wav2vec2 folder; the translation task starts from a zoo "
                                       "run or model folder or a transformers Marian folder"),
             ("text_generation", wav2vec2, "is a transformers wav2vec2 folder; the text_generation task starts from "
                                           "a zoo run or model folder or a transformers GPT-2 folder"),
             ("image_classification", marian, "the image_classification task starts from a zoo run or model "
                                              "folder, a transformers ViT folder or a timm ViT weights file or hub "
                                              "folder"),
             ("detection", wav2vec2, "the detection task starts from a zoo run or model folder, a transformers "
                                     "ViT folder or a timm ViT weights file or hub folder"),
             ("asr", marian, "the asr task starts from a zoo run or model folder, a transformers wav2vec2 folder, "
                             "a transformers Whisper folder or a torchaudio wav2vec2 weights file")]
    for task, source, message in cases:
        capsys.readouterr()     # transformers' saving progress
        with pytest.raises(SystemExit):
            _train(task, tmp_path / task, source)
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / task / "run").exists()


def test_a_gpt2_folder_without_its_tokenizer_is_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    spec, _ = FIXTURES["text_generation"].write(tmp_path / "data")
    gpt2 = _gpt2_folder(tmp_path / "gpt2", zoo.get_task("text_generation").datasets(spec, "train").texts,
                        tokenizer=False)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _train("text_generation", tmp_path, gpt2, "--block-size", "16")
    assert "has no tokenizer.json; text_generation needs the tokenizer" in capsys.readouterr().err


def test_a_byte_level_tokenizer_json_serves_the_text_generation_metrics_and_prompts(tmp_path):
    from tasks.text_generation.metrics import raw_characters
    from zoo.texts import continuation

    texts = ["the cat sat on the mat", "we saw the cat, then the dog"]
    tokenizer = HFTokenizer.load(_gpt2_folder(tmp_path / "gpt2", texts * 20) / "tokenizer.json")
    ids, characters = raw_characters(tokenizer, texts)
    assert ids == [*tokenizer.encode(texts[0]), tokenizer.eos_id, *tokenizer.encode(texts[1]), tokenizer.eos_id]
    assert sum(characters) == sum(len(t) + 1 for t in texts)   # every character counted once, + each EOS
    assert characters[0] == len(tokenizer.decode(ids[:1]))     # the first token's own characters
    cat = tokenizer.encode(" cat")
    assert tokenizer.starts_word(cat[0]) and not tokenizer.starts_word(tokenizer.encode("cat")[0])
    assert continuation(tokenizer, tokenizer.encode("the"), cat) == " cat"
    other = HFTokenizer.load(_gpt2_folder(tmp_path / "other", ["a dog ran far"] * 20) / "tokenizer.json")
    assert tokenizer.fingerprint() == HFTokenizer(tokenizer.text).fingerprint() != other.fingerprint()


def test_a_marian_folder_without_its_tokenizer_is_refused(tmp_path, capsys):
    marian = _marian_folder(tmp_path / "marian")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _train("translation", tmp_path, marian)
    assert "has no tokenizer.json; translation reads both sides with the model's own tokenizer" in \
        capsys.readouterr().err
