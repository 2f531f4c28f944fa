"""LoRA through peft on our backbones and wrapped ones: what trains, save/load, adapters alone,
merging, KV-cache generation, and the ``zoo train --lora`` flags."""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import zoo
from tests.backbone_configs import ADAPTER_ARGS, WRAPPED_ARGS
from tests.test_cli import TINY_BACKBONE, write_reviews
from tests.test_trainer import crash_and_resume
from zoo import cli
from zoo.errors import ZooError
from zoo.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, add_lora, apply_adapters, merge_lora, parameter_counts

TEXT = dict(vocab_size=50, dim=32, depth=2, heads=2)
# name -> (backbone, backbone args, the Linear names LoRA picks by default in one layer)
BACKBONES = {
    "text_encoder": ("text_encoder_tiny", TEXT, ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]),
    "text_decoder": ("text_decoder_tiny", TEXT, ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]),
    "vit": ("vit_tiny", dict(img_size=32, patch_size=8, dim=32, depth=1, heads=2),
            ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]),
    "speech_encoder": ("speech_encoder_tiny", dict(dim=32, depth=1, heads=2),
                       ["attn.qkv", "attn.proj", "ff1.fc1", "ff1.fc2", "mlp.fc1", "mlp.fc2"]),
    "timm_vit": ("timm/test_vit", dict(img_size=32), ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]),
    "torchaudio_wav2vec2": ("torchaudio/wav2vec2_model", ADAPTER_ARGS["torchaudio/wav2vec2_model"],
                            ["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj",
                             "feed_forward.intermediate_dense", "feed_forward.output_dense"]),
    "wrapped_bert": ("transformers", WRAPPED_ARGS,
                     ["attention.self.query", "attention.self.key", "attention.self.value",
                      "attention.output.dense", "intermediate.dense", "output.dense"]),
}


def _model(kind: str) -> zoo.ZooModel:
    name, args, _ = BACKBONES[kind]
    torch.manual_seed(0)
    head = ("lm", {}) if kind == "text_decoder" else ("classification", {"num_classes": 3})
    return zoo.create_model(name, head[0], backbone_args=copy.deepcopy(args), **head[1]).eval()


def _batch(model: zoo.ZooModel) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    modality = model.backbone.modality
    if modality == "image":
        return {"inputs": torch.randn(2, 3, 32, 32, generator=generator)}
    if modality == "audio":
        mask = torch.arange(4800)[None] < torch.tensor([4800, 3200])[:, None]
        return {"inputs": 0.1 * torch.randn(2, 4800, generator=generator) * mask, "mask": mask}
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    return {"inputs": torch.randint(4, 50, (2, 7), generator=generator) * mask, "mask": mask}


def _output(model: zoo.ZooModel, batch: dict) -> torch.Tensor:
    return next(v for v in model(batch).values() if isinstance(v, torch.Tensor) and v.is_floating_point())


def _in_layer(name: str) -> str:
    """A module path inside its layer: ``stack.blocks.3.attn.qkv`` -> ``attn.qkv``."""
    parts = name.split(".")
    last_index = max(i for i, p in enumerate(parts) if p.isdigit())
    return ".".join(parts[last_index + 1:])


def _excite(model: zoo.ZooModel) -> None:
    """Random B matrices (peft starts them at zero, which would make every comparison trivial)."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(0.2 * torch.randn(param.shape, generator=generator))


def _lora_model(kind: str, rank: int = 2) -> zoo.ZooModel:
    model = _model(kind)
    add_lora(model, rank)
    _excite(model)
    return model.eval()


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_only_adapters_and_head_train_and_the_count_is_rank_times_in_plus_out(kind: str) -> None:
    model = _model(kind)
    batch = _batch(model)
    before = _output(model, batch)
    linears = {n: (m.in_features, m.out_features) for n, m in model.backbone.named_modules() if isinstance(m, nn.Linear)}
    spec = add_lora(model, rank=3)
    assert {_in_layer(t) for t in spec.targets} == set(BACKBONES[kind][2])
    with torch.no_grad():
        assert torch.equal(_output(model, batch), before)          # B = 0: the function is unchanged
    backbone_tensors = {p.data_ptr() for p in model.backbone.parameters()}
    head_own = [p for p in model.head.parameters() if p.data_ptr() not in backbone_tensors]
    expected = sum(3 * (linears[t][0] + linears[t][1]) for t in spec.targets) + sum(p.numel() for p in head_own)
    trainable, total = parameter_counts(model)
    assert trainable == expected
    assert total == sum(p.numel() for p in model.parameters())
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or n.startswith("head.") for n in trains)
    assert {n for n in trains if ".lora_" in n} == {f"backbone.{t}.lora_{ab}.default.weight"
                                                   for t in spec.targets for ab in "AB"}


@pytest.mark.parametrize("kind", ["text_encoder", "text_decoder", "wrapped_bert"])
def test_a_training_step_changes_only_adapters_and_head(kind: str) -> None:
    model = _lora_model(kind).train()
    start = {n: t.clone() for n, t in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    _output(model, _batch(model)).pow(2).mean().backward()
    optimizer.step()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, start[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert any(".lora_A." in n for n in changed) and any(".lora_B." in n for n in changed)
    if kind == "text_decoder":     # the LM head is tied to the token embedding: it stays the frozen base
        assert "backbone.embed.weight" not in changed


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_kv_cache_generation_with_lora_equals_the_uncached_path(cache: str) -> None:
    model = _lora_model("text_decoder")
    prompt = {"inputs": torch.tensor([[5, 9, 11, 40, 7]])}
    plain = model.generate(prompt, stop_tokens=(), max_new_tokens=8, use_cache=False)
    assert model.generate(prompt, stop_tokens=(), max_new_tokens=8, static_cache=cache == "static") == plain
    reference = _model("text_decoder")    # the adapters do change what is generated
    assert reference.generate(prompt, stop_tokens=(), max_new_tokens=8) != plain


@pytest.mark.parametrize("kind", ["text_encoder", "text_decoder"])
def test_load_of_a_lora_folder_equals_the_model_and_its_merged_copy(kind: str, tmp_path: Path) -> None:
    model = _lora_model(kind)
    batch = _batch(model)
    model.save(tmp_path / "run")
    loaded = zoo.load(tmp_path / "run")
    merged = merge_lora(copy.deepcopy(model)).eval()
    assert not any(".lora_" in n or ".base_layer." in n for n in merged.state_dict())
    with torch.no_grad():
        reference = _output(model, batch)
        assert torch.equal(_output(loaded, batch), reference)
        torch.testing.assert_close(_output(merged, batch), reference, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(_output(_model(kind), batch), reference, atol=1e-3)   # LoRA mattered
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lora"]["rank"] == 2
    merged.save(tmp_path / "merged")
    plain = zoo.load(tmp_path / "merged")
    assert plain.lora is None and "lora" not in json.loads((tmp_path / "merged" / "config.json").read_text())
    with torch.no_grad():
        torch.testing.assert_close(_output(plain, batch), reference, rtol=1e-5, atol=1e-5)
    if kind == "text_decoder":
        prompt = {"inputs": torch.tensor([[5, 9, 11, 40, 7], [0, 0, 12, 13, 14]]),
                  "mask": torch.tensor([[True] * 5, [False, False, True, True, True]])}
        greedy = loaded.generate(prompt, stop_tokens=(), max_new_tokens=10)
        assert plain.generate(prompt, stop_tokens=(), max_new_tokens=10) == greedy
        assert model.generate(prompt, stop_tokens=(), max_new_tokens=10) == greedy


def test_a_merged_model_keeps_no_peft_record_and_takes_new_adapters_cleanly() -> None:
    model = merge_lora(_lora_model("text_encoder"))
    assert not hasattr(model.backbone, "peft_config")
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # peft warns when it finds an earlier adapters' config
        spec = add_lora(model, rank=4, targets=["qkv"])
    assert spec.rank == 4 and list(model.backbone.peft_config) == ["default"]
    assert {n.rsplit(".lora_", 1)[0] for n, _ in model.backbone.named_parameters() if ".lora_" in n} == set(
        spec.targets) == {"stack.blocks.0.attn.qkv", "stack.blocks.1.attn.qkv"}


def test_adapters_alone_are_small_and_reapplied_on_the_base_give_the_same_outputs(tmp_path: Path) -> None:
    model = _model("text_encoder")
    base_state = {n: t.clone() for n, t in model.state_dict().items()}
    add_lora(model, 2)
    _excite(model)
    with torch.no_grad():
        model.head.fc.weight.add_(1.0)       # fine-tuning also changed the head: the adapter file carries it
    model.save(tmp_path / "run")
    adapters, full = tmp_path / "run" / ADAPTER_WEIGHTS, tmp_path / "run" / "model.safetensors"
    assert adapters.stat().st_size < full.stat().st_size / 4
    assert json.loads((tmp_path / "run" / ADAPTER_CONFIG).read_text())["lora"]["targets"] == list(model.lora.targets)
    base = _model("text_encoder")
    base.load_state_dict(base_state)
    apply_adapters(base, tmp_path / "run")
    batch = _batch(model)
    with torch.no_grad():
        assert torch.equal(_output(base.eval(), batch), _output(model, batch))
    other = zoo.create_model("text_encoder_tiny", "classification", backbone_args=dict(TEXT, depth=1), num_classes=3)
    with pytest.raises(ZooError, match="target 'stack.blocks.1.attn.qkv' is no linear layer"):
        apply_adapters(other, tmp_path / "run")


def test_a_head_with_tied_weights_saves_its_adapters_and_reapplies_them(tmp_path: Path) -> None:
    """The seq2seq head ties its output projection to its embedding: the adapter file holds that tensor once."""
    def build() -> zoo.ZooModel:
        torch.manual_seed(0)
        return zoo.create_model("speech_encoder_tiny", "seq2seq", backbone_args=BACKBONES["speech_encoder"][1],
                                vocab_size=40, depth=1)

    model, base = build(), build()
    add_lora(model, 2)
    with torch.no_grad():
        model.head.embed.weight.add_(0.5)      # fine-tuned: the tied projection moved with it
    model.eval().save(tmp_path)
    apply_adapters(base, tmp_path)
    assert torch.equal(base.head.proj.weight, model.head.proj.weight)
    assert base.head.proj.weight.data_ptr() == base.head.embed.weight.data_ptr()


def test_multihead_attention_children_are_never_targets() -> None:
    """torchaudio's Conformer attention is nn.MultiheadAttention, which reads out_proj.weight itself."""
    model = zoo.create_model("torchaudio/conformer", "classification", num_classes=3,
                             backbone_args=ADAPTER_ARGS["torchaudio/conformer"])
    spec = add_lora(model, 2)
    assert spec.targets and all(".ffn" in t for t in spec.targets)
    with pytest.raises(ZooError, match="target 'out_proj' is no linear layer"):
        add_lora(zoo.create_model("torchaudio/conformer", "classification", num_classes=3,
                                  backbone_args=ADAPTER_ARGS["torchaudio/conformer"]), 2, targets=["out_proj"])


def test_transfer_from_a_lora_folder_takes_the_merged_backbone(tmp_path: Path) -> None:
    model = _lora_model("text_encoder")
    model.save(tmp_path / "run")
    merged = merge_lora(copy.deepcopy(model))
    batch = _batch(model)
    with torch.no_grad():
        want = merged.backbone(batch["inputs"], batch["mask"]).tokens
        pretrained = zoo.create_model(pretrained=tmp_path / "run", head="classification", num_classes=2)
        torch.testing.assert_close(pretrained.backbone(batch["inputs"], batch["mask"]).tokens, want)
        fresh = _model("text_encoder")
        report = fresh.load_backbone_from(tmp_path / "run")
        assert not report.missing and not report.skipped
        torch.testing.assert_close(fresh.backbone(batch["inputs"], batch["mask"]).tokens, want)
    pretrained.save(tmp_path / "transferred")      # a plain model again: it saves and loads
    assert zoo.load(tmp_path / "transferred").lora is None


def test_python_errors_name_the_value_and_list_valid_targets() -> None:
    with pytest.raises(ZooError, match=r"LoRA rank 0: expected a whole number >= 1"):
        add_lora(_model("text_encoder"), 0)
    with pytest.raises(ZooError, match=r"LoRA target 'query' is no linear layer of this backbone; "
                                       r"valid targets: fc1, fc2, proj, qkv"):
        add_lora(_model("text_encoder"), 2, targets=["query"])
    model = _model("text_encoder")
    spec = add_lora(model, 2, targets=["qkv"])
    assert spec.targets == ("stack.blocks.0.attn.qkv", "stack.blocks.1.attn.qkv")
    with pytest.raises(ZooError, match="already has LoRA adapters"):
        add_lora(model, 2)
    with pytest.raises(ZooError, match="no LoRA adapters to merge"):
        merge_lora(_model("text_encoder"))


def test_a_resumed_lora_run_repeats_the_uninterrupted_losses(tmp_path: Path) -> None:
    resumed = crash_and_resume(tmp_path, "--batch-size", 8, "--max-steps", 8, "--checkpoint-every", 4,
                               "--warmup-steps", 2, "--lora", 2, "--ema", 0.9)
    assert zoo.load(resumed / "last").lora.rank == 2


def _train(folder: Path, *flags: str) -> Path:
    """``zoo train sentiment`` for 2 steps on a tiny CSV in ``folder`` with ``flags``; the run folder."""
    write_reviews(folder / "reviews.csv", 40, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        cli.main(["train", "sentiment", "--data", "csv:reviews.csv", "--out", "run", "--max-steps", "2",
                  "--batch-size", "8", "--vocab-size", "30", "--backbone-args", TINY_BACKBONE, "--device", "cpu",
                  "--no-progress", *flags])
    return folder / "run"


def test_cli_lora_prints_the_trainable_count_and_the_run_loads(tmp_path: Path, capsys) -> None:
    run = _train(tmp_path, "--lora", "4", "--lora-targets", "qkv")
    out = capsys.readouterr().out
    model = zoo.load(run / "best")
    trainable, total = parameter_counts(model)
    assert f"parameters: {trainable:,} trainable of {total:,}" in out
    assert "LoRA rank 4 (alpha 4) on 1 linear layers: stack.blocks.0.attn.qkv" in out
    qkv = model.backbone.stack.blocks[0].attn.qkv
    assert trainable == 4 * (16 + 48) + sum(p.numel() for p in model.head.parameters())
    assert model.lora.targets == ("stack.blocks.0.attn.qkv",) and qkv.lora_B["default"].weight.abs().sum() > 0
    assert (run / "best" / ADAPTER_WEIGHTS).is_file()


@pytest.mark.parametrize("flags, message", [
    (["--lora", "0"], "argument --lora: expected an integer >= 1, got '0'"),
    (["--lora", "2", "--lora-targets", "query"],
     "--lora-targets: LoRA target 'query' is no linear layer of this backbone; valid targets: fc1, fc2, proj, qkv"),
    (["--lora", "2", "--freeze-backbone"], "--freeze-backbone freezes the LoRA adapters too"),
])
def test_cli_bad_lora_values_print_one_line(flags: list[str], message: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _train(tmp_path, *flags)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: ") and message in err and len(err.splitlines()) == 1


def test_cli_merge_lora_writes_a_plain_folder_with_the_same_outputs(tmp_path: Path, capsys) -> None:
    model = _lora_model("text_encoder")
    batch = _batch(model)
    model.save(tmp_path / "run")
    cli.main(["merge-lora", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "plain")])
    plain = zoo.load(tmp_path / "plain")
    assert plain.lora is None
    with torch.no_grad():
        torch.testing.assert_close(_output(plain, batch), _output(model, batch), rtol=1e-5, atol=1e-5)
    for argv, words in ((["--checkpoint", str(tmp_path / "plain"), "--out", str(tmp_path / "again")], "no LoRA"),
                        (["--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "plain")], "already exists")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["merge-lora", *argv])
        err = capsys.readouterr().err
        assert exit_info.value.code != 0 and err.count("\n") == 1 and words in err
    assert not (tmp_path / "again").exists()
