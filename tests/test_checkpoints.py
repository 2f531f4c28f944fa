"""Checkpoints: pickle refused, corrupt files named, tied weights kept, head changes reported."""
import pytest
import torch

import zoo

TINY_TEXT = dict(vocab_size=40, dim=32, depth=1, heads=2)


def _classifier(classes=3):
    return zoo.create_model("text_encoder_tiny", "classification", backbone_args=TINY_TEXT, num_classes=classes)


def test_pickle_checkpoint_is_refused(tmp_path):
    model = _classifier()
    model.save(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin.*pickle"):
        zoo.load(tmp_path)
    torch.save(model.state_dict(), tmp_path / "model.safetensors")  # a pickle under the right name
    with pytest.raises(ValueError, match="model.safetensors.*refusing to unpickle"):
        zoo.load(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_corrupt_safetensors_names_the_file(tmp_path, damage):
    _classifier().save(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:8] + b"#" * 40 + data[48:])
    with pytest.raises(ValueError, match=str(path)):
        zoo.load(tmp_path)


def test_tied_weights_survive_save_load(tmp_path):
    model = zoo.create_model("text_decoder_tiny", "lm", backbone_args=TINY_TEXT)
    model.save(tmp_path)
    loaded = zoo.load(tmp_path)
    assert loaded.head.proj.weight is loaded.backbone.embed.weight
    torch.testing.assert_close(loaded.backbone.embed.weight, model.backbone.embed.weight)
    ids = torch.randint(4, 40, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded({"inputs": ids})["logits"], model.eval()({"inputs": ids})["logits"])


def test_loading_into_a_different_head_reports_skipped(tmp_path):
    source = _classifier(classes=3)
    source.save(tmp_path)
    target = _classifier(classes=5)
    report = target.load_weights(tmp_path)
    assert set(report.skipped) == {"head.fc.weight", "head.fc.bias"}
    assert all(name.startswith("backbone.") for name in report.loaded)
    torch.testing.assert_close(target.backbone.embed.weight, source.backbone.embed.weight)
    assert target.head.fc.weight.shape == (5, 32)


def test_reset_head_keeps_backbone():
    model = _classifier(classes=3)
    embed = model.backbone.embed.weight
    model.reset_head("classification", num_classes=7)
    assert model.head.fc.out_features == 7 and model.backbone.embed.weight is embed


def test_config_format_version_checked(tmp_path):
    _classifier().save(tmp_path)
    config = tmp_path / "config.json"
    config.write_text(config.read_text().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(ValueError, match="format_version"):
        zoo.load(tmp_path)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = _classifier()
    batch = {"inputs": torch.randint(4, 40, (2, 6)), "labels": torch.tensor([0, 2])}
    model.loss(model(batch), batch)["loss"].backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model.loss(model(batch), batch)["loss"].backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain[name], atol=1e-6, rtol=1e-5)
