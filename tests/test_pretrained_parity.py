"""Pretrained weights through zoo equal the reference libraries: tiny random models, no downloads.

Each test builds a tiny random model with transformers, timm or torchaudio, saves it as a user
would (``save_pretrained`` / safetensors), loads it with ``zoo.create_model(pretrained=...)``
and compares hidden states and logits in fp32, padded batches included.
"""
import json

import pytest
import timm
import torch
import torchaudio
import transformers
from safetensors.torch import save_file

import zoo
from zoo.errors import ZooError

ATOL = 1e-4


@pytest.fixture(autouse=True)
def _fp32_single_thread():
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    yield


def _excited(model, keep=()):
    """``model`` with every parameter moved by N(0, 0.3): default inits are so small that a wrong
    activation (exact vs tanh GELU) or a swapped norm would hide under the tolerance. ``keep``:
    parameters transformers recomputes instead of saving (Marian's sinusoidal positions)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not any(part in name for part in keep):
                parameter.add_(torch.randn_like(parameter) * 0.3)
    return model.eval()


def _assert_real_close(got, expected, mask):
    """Equal on the real positions of a (B, T, ...) tensor (padding is ignored downstream)."""
    torch.testing.assert_close(got[mask], expected[mask], atol=ATOL, rtol=1e-4)


def _gpt2(tmp_path):
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=1, pad_token_id=1)
    reference = _excited(transformers.GPT2LMHeadModel(config))
    reference.save_pretrained(tmp_path / "gpt2", safe_serialization=True)
    return reference, tmp_path / "gpt2"


def test_gpt2_converts_into_our_decoder_with_equal_logits_on_a_padded_batch(tmp_path):
    reference, folder = _gpt2(tmp_path)
    model = zoo.create_model(pretrained=folder, head="lm").eval()
    assert model.backbone.zoo_spec["name"] == "text_decoder_gpt2" and model.backbone.causal
    tokens = torch.randint(0, 64, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 8:] = False   # right padding: real positions keep positions 0..7
    mask[2, 5:] = False
    with torch.no_grad():
        expected = reference(input_ids=tokens, attention_mask=mask.long(), output_hidden_states=True)
        got = model({"inputs": tokens, "mask": mask})
        features = model.backbone(tokens, mask)
    _assert_real_close(got["logits"], expected.logits, mask)
    _assert_real_close(features.tokens, expected.hidden_states[-1], mask)
    assert model.pretrained_report.missing == []   # the lm head is tied to the converted embedding


def test_gpt2_greedy_generation_equals_transformers_generate(tmp_path):
    """Prompts of 6, 4 and 2 tokens, left-padded in one batch, both sides with a KV cache."""
    reference, folder = _gpt2(tmp_path)
    model = zoo.create_model(pretrained=folder, head="lm").eval()
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, :2], mask[2, :4] = False, False
    prompts = torch.randint(2, 64, (3, 6)).masked_fill(~mask, 1)
    expected = reference.generate(prompts, attention_mask=mask.long(), do_sample=False, max_new_tokens=12,
                                  pad_token_id=1)[:, 6:].tolist()
    got = model.generate({"inputs": prompts, "mask": mask}, max_new_tokens=12, stop_tokens=(1,))   # 1: eos
    for ours, theirs in zip(got, expected):
        stop = theirs.index(1) if 1 in theirs else len(theirs)   # ours ends before eos, theirs pads after it
        assert ours == theirs[:stop]
    assert sum(len(row) for row in got) >= 12


def test_converted_gpt2_saves_and_zoo_loads_back_identically(tmp_path):
    _, folder = _gpt2(tmp_path)
    model = zoo.create_model(pretrained=folder, head="lm").eval()
    model.save(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["backbone"]["name"] == "text_decoder_gpt2" and saved["backbone"]["args"]["mlp"] == "gelu_tanh"
    (folder / "model.safetensors").unlink()   # the original folder is not needed to load ours
    loaded = zoo.load(tmp_path / "ours")
    tokens = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        assert torch.equal(loaded({"inputs": tokens})["logits"], model({"inputs": tokens})["logits"])


def test_load_report_counts_what_was_loaded_skipped_and_left_new(tmp_path):
    _, folder = _gpt2(tmp_path)
    model = zoo.create_model(pretrained=folder, head="classification", num_classes=3)
    report = model.pretrained_report
    # GPT-2 of 2 layers: wte, wpe, ln_f (2) + 12 tensors per block = 28 backbone tensors
    assert len(report.loaded) == 28 and all(n.startswith("backbone.") for n in report.loaded)
    assert sorted(report.missing) == ["head.fc.bias", "head.fc.weight"]
    assert report.skipped == []
    assert str(report) == "loaded 28 tensors, skipped 0 (not used by zoo), 2 missing"


def _vit_images():
    images = torch.randn(2, 3, 32, 32)
    return images


def test_timm_vit_file_converts_with_equal_logits(tmp_path):
    reference = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=5)
    _excited(reference)
    save_file(reference.state_dict(), str(tmp_path / "vit.safetensors"))
    model = zoo.create_model(pretrained=tmp_path / "vit.safetensors", head="classification", num_classes=5).eval()
    assert model.backbone.zoo_spec["args"]["heads"] == 3   # 192 wide: timm's 64-wide heads
    images = _vit_images()
    with torch.no_grad():
        torch.testing.assert_close(model({"inputs": images})["logits"], reference(images), atol=ATOL, rtol=1e-4)
        torch.testing.assert_close(model.backbone(images).tokens, reference.forward_features(images),
                                   atol=ATOL, rtol=1e-4)
    assert sorted(model.pretrained_report.loaded)[-2:] == ["head.fc.bias", "head.fc.weight"]


def test_timm_vit_heads_come_from_the_named_timm_model(tmp_path):
    reference = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_heads=4,
                                  num_classes=0).eval()
    save_file(reference.state_dict(), str(tmp_path / "vit.safetensors"))
    model = zoo.create_model(pretrained=tmp_path / "vit.safetensors", backbone="timm/vit_tiny_patch16_224",
                             backbone_args={"img_size": 32, "patch_size": 8, "depth": 1, "num_heads": 4},
                             head="classification", num_classes=2).eval()
    images = _vit_images()
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(images).tokens, reference.forward_features(images),
                                   atol=ATOL, rtol=1e-4)


def test_timm_hub_folder_converts_and_brings_its_mean_and_std(tmp_path):
    from timm.models import save_for_hf

    args = dict(img_size=32, patch_size=8, depth=2, num_heads=4)
    reference = _excited(timm.create_model("vit_tiny_patch16_224", num_classes=5, **args))
    save_for_hf(reference, str(tmp_path / "pickled"), model_args=args)   # timm's default: pytorch_model.bin
    with pytest.raises(ZooError, match="pytorch_model.bin is a pickle checkpoint"):
        zoo.create_model(pretrained=tmp_path / "pickled", head="classification", num_classes=5)
    save_for_hf(reference, str(tmp_path / "timm"), model_args=args, safe_serialization=True)
    model = zoo.create_model(pretrained=tmp_path / "timm", head="classification", num_classes=5).eval()
    assert model.backbone.zoo_spec["args"]["heads"] == 4   # read from the timm architecture, not guessed
    assert model.preprocessing["mean"] == list(reference.pretrained_cfg["mean"])
    images = _vit_images()
    with torch.no_grad():
        torch.testing.assert_close(model({"inputs": images})["logits"], reference(images), atol=ATOL, rtol=1e-4)


def test_sharded_safetensors_folder_converts(tmp_path):
    reference, folder = _gpt2(tmp_path)
    reference.save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="20KB")
    assert not (tmp_path / "sharded" / "model.safetensors").exists()
    model = zoo.create_model(pretrained=tmp_path / "sharded", head="lm").eval()
    tokens = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model({"inputs": tokens})["logits"], reference(tokens).logits,
                                   atol=ATOL, rtol=1e-4)


def test_transformers_vit_converts_with_equal_logits_and_padded_batch(tmp_path):
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, num_labels=3)
    reference = _excited(transformers.ViTForImageClassification(config))
    reference.save_pretrained(tmp_path / "vit", safe_serialization=True)
    model = zoo.create_model(pretrained=tmp_path / "vit", head="classification", num_classes=3).eval()
    images = _vit_images()
    small = torch.randn(1, 3, 24, 24)
    padded = torch.zeros(2, 3, 32, 32)
    padded[0], padded[1, :, :24, :24] = images[0], small[0]
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[0], mask[1, :24, :24] = True, True
    with torch.no_grad():
        expected = reference(pixel_values=images, output_hidden_states=True)
        torch.testing.assert_close(model({"inputs": images})["logits"], expected.logits, atol=ATOL, rtol=1e-4)
        batch = model({"inputs": padded, "mask": mask})["logits"]
        small_expected = reference(pixel_values=small, interpolate_pos_encoding=True).logits
    torch.testing.assert_close(batch[0], expected.logits[0], atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(batch[1], small_expected[0], atol=ATOL, rtol=1e-4)
    assert model.pretrained_report.skipped == []   # ViTForImageClassification has no pooler
    assert sorted(model.pretrained_report.loaded)[-2:] == ["head.fc.bias", "head.fc.weight"]


def _bert(tmp_path):
    config = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32)
    reference = _excited(transformers.BertModel(config))
    reference.save_pretrained(tmp_path / "bert", safe_serialization=True)
    return reference, tmp_path / "bert"


def test_bert_stays_wrapped_with_equal_hidden_states_on_a_padded_batch(tmp_path):
    reference, folder = _bert(tmp_path)
    model = zoo.create_model(pretrained=folder, head="classification", num_classes=2).eval()
    backbone = model.backbone
    assert (backbone.modality, backbone.causal, backbone.dim, backbone.padding_sensitive) == ("text", False, 32, False)
    tokens = torch.randint(0, 60, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    with torch.no_grad():
        expected = reference(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        features = backbone(tokens, mask)
        alone = backbone(tokens[1:, :6], None).tokens
    _assert_real_close(features.tokens, expected, mask)
    torch.testing.assert_close(features.tokens[1, :6], alone[0], atol=ATOL, rtol=1e-4)
    assert torch.equal(features.mask, mask)
    report = model.pretrained_report   # the pooler is not used: Features are the hidden states
    assert report.skipped == ["pooler.dense.bias", "pooler.dense.weight"]
    assert len(report.loaded) == len(reference.state_dict()) - 2
    assert sorted(report.missing) == ["head.fc.bias", "head.fc.weight"]


def test_wrapped_bert_saves_and_zoo_loads_back_identically(tmp_path):
    _, folder = _bert(tmp_path)
    model = zoo.create_model(pretrained=folder, head="classification", num_classes=2).eval()
    model.save(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["backbone"]["name"] == "transformers" and saved["backbone"]["args"]["config"]["model_type"] == "bert"
    for file in folder.iterdir():   # nothing of the original folder is read back
        file.unlink()
    loaded = zoo.load(tmp_path / "ours")
    tokens = torch.randint(0, 60, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded({"inputs": tokens})["logits"], model({"inputs": tokens})["logits"])


def test_marian_encoder_stays_wrapped_and_reports_the_decoder_skipped(tmp_path):
    config = transformers.MarianConfig(vocab_size=40, d_model=32, encoder_layers=1, decoder_layers=1,
                                       encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                       decoder_ffn_dim=64, max_position_embeddings=32, pad_token_id=39,
                                       decoder_start_token_id=39)
    reference = _excited(transformers.MarianMTModel(config), keep=("embed_positions",))
    reference.save_pretrained(tmp_path / "marian", safe_serialization=True)
    model = zoo.create_model(pretrained=tmp_path / "marian", head="classification", num_classes=2).eval()
    tokens = torch.randint(0, 39, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, 5:] = False
    with torch.no_grad():
        expected = reference.get_encoder()(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        got = model.backbone(tokens, mask).tokens
    _assert_real_close(got, expected, mask)
    report = model.pretrained_report
    assert any(n.startswith("decoder.") for n in report.skipped)
    assert not any(n.startswith("backbone.model.decoder") for n in report.loaded)


def _waves():
    waves = torch.randn(2, 8000) * 0.1
    mask = torch.ones(2, 8000, dtype=torch.bool)
    mask[1, 5600:] = False
    return waves * mask, mask


def test_transformers_wav2vec2_normalises_waveforms_as_its_feature_extractor_says(tmp_path):
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                                         conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, feat_extract_norm="layer")
    reference = _excited(transformers.Wav2Vec2Model(config))
    reference.save_pretrained(tmp_path / "w2v", safe_serialization=True)
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    extractor.save_pretrained(tmp_path / "w2v")
    model = zoo.create_model(pretrained=tmp_path / "w2v", head="ctc").eval()
    waves, mask = _waves()
    waves = waves * 3 + 0.5 * mask   # far from zero mean, unit variance
    prepared = extractor([waves[0].numpy(), waves[1, :5600].numpy()], sampling_rate=16000, padding=True,
                         return_tensors="pt")
    with torch.no_grad():
        expected = reference(prepared.input_values, attention_mask=prepared.attention_mask).last_hidden_state
        features = model.backbone(waves, mask)
    _assert_real_close(features.tokens, expected, features.mask)


def test_transformers_wav2vec2_wrapped_with_equal_hidden_states(tmp_path):
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 4, 4),
                                         conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
                                         do_stable_layer_norm=True)
    reference = _excited(transformers.Wav2Vec2Model(config))
    reference.save_pretrained(tmp_path / "w2v", safe_serialization=True)
    model = zoo.create_model(pretrained=tmp_path / "w2v", head="ctc").eval()
    waves, mask = _waves()
    with torch.no_grad():
        expected = reference(waves, attention_mask=mask.long()).last_hidden_state
        features = model.backbone(waves, mask)
    steps = reference._get_feat_extract_output_lengths(mask.sum(dim=1))
    assert features.mask.sum(dim=1).tolist() == steps.tolist()
    _assert_real_close(features.tokens, expected, features.mask)


def test_torchaudio_wav2vec2_file_loads_with_equal_outputs(tmp_path):
    args = dict(extractor_mode="group_norm", extractor_conv_layer_config=[[16, 10, 5], [16, 4, 4], [16, 4, 4]],
                extractor_conv_bias=False, encoder_embed_dim=32, encoder_projection_dropout=0.0,
                encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4, encoder_num_layers=2, encoder_num_heads=4,
                encoder_attention_dropout=0.0, encoder_ff_interm_features=64, encoder_ff_interm_dropout=0.0,
                encoder_dropout=0.0, encoder_layer_norm_first=False, encoder_layer_drop=0.0, aux_num_out=None)
    reference = _excited(torchaudio.models.wav2vec2_model(**args))
    save_file(reference.state_dict(), str(tmp_path / "w2v.safetensors"))
    with pytest.raises(ZooError, match="backbone='torchaudio/"):
        zoo.create_model(pretrained=tmp_path / "w2v.safetensors", head="ctc")
    model = zoo.create_model(pretrained=tmp_path / "w2v.safetensors", backbone="torchaudio/wav2vec2_model",
                             backbone_args=args, head="ctc").eval()
    waves, mask = _waves()
    with torch.no_grad():
        expected, lengths = reference(waves, mask.sum(dim=1))
        features = model.backbone(waves, mask)
    assert features.mask.sum(dim=1).tolist() == lengths.tolist()
    _assert_real_close(features.tokens, expected, features.mask)
    report = model.pretrained_report
    assert len(report.loaded) == len(reference.state_dict()) and report.skipped == []
    assert report.missing and all(n.startswith("head.") for n in report.missing)


def test_whisper_encoder_wrapped_on_waveforms_equals_feature_extractor_plus_encoder(tmp_path):
    config = transformers.WhisperConfig(vocab_size=60, num_mel_bins=16, d_model=32, encoder_layers=2,
                                        decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
                                        encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=50,
                                        max_target_positions=20, pad_token_id=59, bos_token_id=58,
                                        eos_token_id=58, decoder_start_token_id=57)
    reference = _excited(transformers.WhisperModel(config))
    reference.save_pretrained(tmp_path / "whisper", safe_serialization=True)
    model = zoo.create_model(pretrained=tmp_path / "whisper", head="classification", num_classes=2).eval()
    extractor = transformers.WhisperFeatureExtractor(feature_size=16, chunk_length=1)
    waves, mask = _waves()
    rows = [waves[0].numpy(), waves[1, :5600].numpy()]
    features_in = extractor(rows, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        expected = reference.get_encoder()(features_in.float()).last_hidden_state
        features = model.backbone(waves, mask)
    assert features.mask.sum(dim=1).tolist() == [25, 18]   # 10 ms frames, halved by the stride-2 conv
    torch.testing.assert_close(features.tokens, expected, atol=ATOL, rtol=1e-4)
    assert model.backbone.padding_sensitive is False   # every clip is padded to the window anyway
    with torch.no_grad():
        alone = model.backbone(waves[1:, :5600]).tokens
    torch.testing.assert_close(features.tokens[1], alone[0], atol=1e-5, rtol=1e-5)
    model.save(tmp_path / "ours")
    loaded = zoo.load(tmp_path / "ours")
    with torch.no_grad():
        batch = {"inputs": waves, "mask": mask}
        assert torch.equal(loaded(batch)["logits"], model(batch)["logits"])


def test_pickle_only_folder_is_refused_naming_the_file_and_the_conversion(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ZooError) as err:
        zoo.create_model(pretrained=folder, head="classification", num_classes=2)
    message = str(err.value)
    assert str(folder / "pytorch_model.bin") in message and "save_file(" in message and "\n" not in message


def test_unknown_weights_file_is_refused_with_what_zoo_reads(tmp_path):
    save_file({"layer.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ZooError, match="not timm ViT or torchaudio wav2vec2 weights; .* bert, gpt2, marian"):
        zoo.create_model(pretrained=tmp_path / "other.safetensors", head="classification", num_classes=2)
    torch.save({"w": torch.zeros(1)}, tmp_path / "vit.pth")
    refusal = f"{tmp_path / 'vit.pth'} is a pickle checkpoint .* save_file\\(.*vit.safetensors"
    with pytest.raises(ZooError, match=refusal):
        zoo.create_model(pretrained=tmp_path / "vit.pth", head="classification", num_classes=2)


def test_architectures_our_blocks_do_not_have_are_refused_naming_why(tmp_path):
    pooled = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=2,
                               global_pool="avg")   # fc_norm over averaged patches: not our class-token ViT
    save_file(pooled.state_dict(), str(tmp_path / "avg.safetensors"))
    with pytest.raises(ZooError, match="avg.safetensors: timm key 'fc_norm.(weight|bias)' has no counterpart"):
        zoo.create_model(pretrained=tmp_path / "avg.safetensors", head="classification", num_classes=2)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=1, n_head=4,
                                     tie_word_embeddings=False)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "untied", safe_serialization=True)
    with pytest.raises(ZooError, match="'lm_head.weight' differs from the token embedding"):
        zoo.create_model(pretrained=tmp_path / "untied", head="lm")


def test_unsupported_family_is_refused_with_the_supported_list(tmp_path):
    folder = tmp_path / "t5"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ZooError, match="'t5' is not supported; supported families: bert, gpt2, marian, vit, "
                                       "wav2vec2, whisper"):
        zoo.create_model(pretrained=folder, head="classification", num_classes=2)


def test_shape_mismatch_is_refused_naming_the_tensor(tmp_path):
    _, folder = _gpt2(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["n_positions"] = 16   # the file's position table has 32 rows
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooError, match="tensor 'transformer.wpe.weight' has shape \\(32, 32\\) .* \\(16, 32\\)"):
        zoo.create_model(pretrained=folder, head="lm")


def test_truncated_wrapped_weights_are_one_zoo_error_naming_the_folder(tmp_path):
    _, folder = _bert(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ZooError, match=f"{folder}: transformers cannot build the model"):
        zoo.create_model(pretrained=folder, head="classification", num_classes=2)


def test_wrapped_shape_mismatch_is_refused_naming_the_tensor(tmp_path):
    _, folder = _bert(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooError, match="tensor 'embeddings.position_embeddings.weight' has shape \\(32, 32\\)"):
        zoo.create_model(pretrained=folder, head="classification", num_classes=2)


def test_zoo_run_folder_as_pretrained_keeps_the_backbone(tmp_path):
    tokenizer = zoo.Tokenizer.train(["the cat sat on the mat", "a dog ran in the park"] * 20, vocab_size=30)
    source = zoo.create_model("text_encoder_tiny", "classification", backbone_args={"vocab_size": 50, "depth": 1},
                              tokenizer=tokenizer, num_classes=2).eval()
    source.save(tmp_path / "run" / "step-3")
    (tmp_path / "run" / "best").symlink_to("step-3")
    model = zoo.create_model(pretrained=tmp_path / "run", head="classification", num_classes=4).eval()
    tokens = torch.randint(0, 50, (2, 6))
    with torch.no_grad():
        assert torch.equal(model.backbone(tokens).tokens, source.backbone(tokens).tokens)
    assert sorted(model.pretrained_report.skipped) == ["head.fc.bias", "head.fc.weight"]
    assert len(model.pretrained_report.loaded) == len(source.backbone.state_dict())
    assert model.tokenizer.encode("the cat ran") == tokenizer.encode("the cat ran")
