"""Checkpoints: pickle refused, corrupt or altered files named, tied weights kept, head changes reported,
old formats migrated, failed saves harmless."""
import errno
import json
import os
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tasks.engine.checkpoints import resolve_checkpoint, write_checkpoint
from zoo import checkpoint
from tests.format1_fixture import format1_folder
from zoo.errors import ZooError

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
    current = f'"format_version": {checkpoint.FORMAT_VERSION}'
    config.write_text(config.read_text().replace(current, '"format_version": 99'))
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


FIXTURE = format1_folder()   # the folder format-1 code saved (tests/format1_fixture.py)


def test_a_model_saved_by_format_1_code_still_loads_and_predicts_the_same():
    model = zoo.load(FIXTURE)
    expected = json.loads((FIXTURE / "expected.json").read_text())
    ids, mask = model.tokenizer.batch(expected["texts"])
    with torch.no_grad():
        logits = model({"inputs": ids, "mask": mask})["logits"]
    torch.testing.assert_close(logits, torch.tensor(expected["logits"]), atol=1e-5, rtol=1e-5)
    assert model.head.labels == ["negative", "positive"] and model.task == "sentiment"


def test_old_format_versions_are_migrated_on_load(tmp_path, monkeypatch):
    """A future format 2 renames head.args.labels to class_names: a version-1 folder goes through
    the registered migration; a folder already at the current version does not."""
    calls = []

    def migrate_v1_to_v2(config: dict) -> dict:
        calls.append(config["format_version"])
        config["head"]["args"]["class_names"] = config["head"]["args"].pop("labels")
        return config

    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 2)
    monkeypatch.setattr(checkpoint, "MIGRATIONS", {})
    checkpoint.migration(1)(migrate_v1_to_v2)
    config = checkpoint.read_config(FIXTURE)
    assert calls == [1] and config["format_version"] == 2
    assert config["head"]["args"]["class_names"] == ["negative", "positive"] and "labels" not in config["head"]["args"]
    with pytest.raises(ValueError, match="already registered"):
        checkpoint.migration(1)(migrate_v1_to_v2)
    shutil.copytree(FIXTURE, tmp_path / "v2")
    path = tmp_path / "v2" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 2}))
    assert checkpoint.read_config(tmp_path / "v2")["head"]["args"]["labels"] == ["negative", "positive"]
    assert calls == [1]


def _saved(tmp_path):
    _classifier().save(tmp_path)
    return tmp_path / "model.safetensors", tmp_path / "config.json"


def _rewrite_weights(path, change):
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def test_weights_tampered_to_int32_are_refused_naming_file_and_tensor(tmp_path):
    weights, _ = _saved(tmp_path)
    _rewrite_weights(weights, lambda t: t.update({"head.fc.weight": t["head.fc.weight"].to(torch.int32)}))
    with pytest.raises(ZooError, match=f"{weights}: tensor 'head.fc.weight' is torch.int32, expected torch.float32"):
        zoo.load(tmp_path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_weights_with_nan_or_inf_are_refused(tmp_path, value):
    weights, _ = _saved(tmp_path)
    _rewrite_weights(weights, lambda t: t["backbone.embed.weight"].view(-1)[3].fill_(value))
    with pytest.raises(ZooError, match=f"{weights}: tensor 'backbone.embed.weight' holds NaN or inf"):
        zoo.load(tmp_path)


def test_config_shapes_that_differ_from_the_weights_name_the_tensor_and_both_shapes(tmp_path):
    weights, config = _saved(tmp_path)
    spec = json.loads(config.read_text())
    spec["head"]["args"]["num_classes"] = 5
    config.write_text(json.dumps(spec))
    with pytest.raises(ZooError, match=re.escape(f"{weights}: tensor 'head.fc.weight' has shape (3, 32) but "
                                                 f"config.json builds (5, 32)")):
        zoo.load(tmp_path)


@pytest.mark.parametrize("part, change, message", [
    ("backbone", {"dimm": 32}, "field 'backbone': backbone 'text_encoder_tiny' has no argument 'dimm'; "
                               "valid arguments: bias, causal, depth, dim, drop_path, dropout"),
    ("head", {"num_clases": 3}, "field 'head': head 'classification' has no argument 'num_clases'; "
                                "valid arguments: dropout, label_smoothing, labels, num_classes, pool"),
    ("backbone", {"dim": "32"}, "field 'backbone': backbone 'text_encoder_tiny': argument 'dim' is '32' (str), "
                                "expected int"),
    ("head", {"num_classes": "3"}, "field 'head': head 'classification': argument 'num_classes' is '3' (str), "
                                   "expected int"),
    ("backbone", {"dropout": [0.1]}, "field 'backbone': backbone 'text_encoder_tiny': argument 'dropout' is [0.1] "
                                     "(list), expected float like 0.0"),
])
def test_unknown_or_mistyped_arguments_name_config_json_and_the_field(tmp_path, part, change, message):
    _, config = _saved(tmp_path)
    spec = json.loads(config.read_text())
    spec[part]["args"].update(change)
    config.write_text(json.dumps(spec))
    with pytest.raises(ZooError, match=re.escape(f"{config}: {message}")):
        zoo.load(tmp_path)


@pytest.mark.parametrize("text, message", [
    ('[1, 2]', "expected a JSON object at the top, got list"),
    ('{"format_version": 1, "backbone": [], "head": {}}', "field 'backbone' is a list, expected an object"),
    ('{"format_version": 1, "backbone": {"name": "x", "args": [1]}, "head": {"name": "y"}}',
     "field 'backbone.args' is a list, expected an object"),
    ('{"format_version": "1"}', "field 'format_version' is '1'"),
    ('{"format_version": 1, "head": {"name": "classification"}}', "field 'backbone' is missing"),
])
def test_config_of_the_wrong_structure_names_the_field(tmp_path, text, message):
    _, config = _saved(tmp_path)
    config.write_text(text)
    with pytest.raises(ZooError, match=f"{re.escape(str(config))}: {re.escape(message)}"):
        zoo.load(tmp_path)


def test_non_utf8_config_is_refused_naming_it(tmp_path):
    _, config = _saved(tmp_path)
    config.write_bytes(config.read_bytes().replace(b'"task"', b'"t\xe9sk"'))
    with pytest.raises(ZooError, match=f"{re.escape(str(config))}: not UTF-8 text"):
        zoo.load(tmp_path)


def test_arguments_are_checked_when_building_by_name_too():
    with pytest.raises(ZooError, match="backbone 'vit_tiny' has no argument 'image_size'; valid arguments: .*img_size"):
        zoo.create_backbone("vit_tiny", image_size=32)
    zoo.create_backbone("vit_tiny", img_size=32, patch_size=8, dim=32, depth=1, heads=2, mlp_ratio=2)  # int for float


def _write_step(run, step):
    model = _classifier()
    write_checkpoint(run, step, model.save, best=True)
    return model


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "No space left on device; free space or pass another --out"),
                                       (errno.EROFS, "Read-only file system; make the run folder writable or "
                                                     "pass another --out")])
def test_a_failing_checkpoint_write_is_one_zoo_error_and_keeps_the_last(tmp_path, code, fix):
    run = tmp_path / "run"
    _write_step(run, 1)

    def failing(folder):
        (folder / "config.json").write_text("{}")
        raise OSError(code, os.strerror(code), str(folder / "model.safetensors"))

    with pytest.raises(ZooError) as caught:
        write_checkpoint(run, 2, failing, best=True)
    assert str(caught.value).startswith(f"cannot write checkpoint to {run / 'step-2'}: {fix}")
    assert "\n" not in str(caught.value)
    assert resolve_checkpoint(run, "last").name == "step-1" and resolve_checkpoint(run).name == "step-1"
    zoo.load(resolve_checkpoint(run))
    assert sorted(p.name for p in run.iterdir()) == ["best", "last", "step-1"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_run_folder_is_one_zoo_error_and_keeps_the_last(tmp_path):
    run = tmp_path / "run"
    _write_step(run, 1)
    run.chmod(0o555)
    try:
        with pytest.raises(ZooError, match="cannot write checkpoint to .*step-2: Permission denied; make the run "
                                           "folder writable or pass another --out"):
            _write_step(run, 2)
    finally:
        run.chmod(0o755)
    zoo.load(resolve_checkpoint(run, "last"))


def test_zoo_load_accepts_a_run_folder_through_its_best_pointer(tmp_path) -> None:
    model = zoo.create_model(backbone="vit_tiny", head="classification",
                             backbone_args={"img_size": 8, "patch_size": 4, "depth": 1, "dim": 16, "heads": 2},
                             num_classes=3).eval()
    run = tmp_path / "run"
    model.save(run / "step-3")
    (run / "best").symlink_to("step-3")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(zoo.load(run)({"inputs": x})["logits"], model({"inputs": x})["logits"])
