"""Image classification task: model building, transforms through save/load, timm and ViT training through
the same task code, fine-tuning, evaluation, prediction with explanations, and a learning test on digits."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

import zoo
from tasks.engine import precision
from tasks.engine.evaluation import EvalOptions
from tasks.engine.trainer import add_train_arguments
from tasks.engine.sets import read_spec
from tasks.image_classification.builtin import BUILTIN_SETS
from tasks.image_classification.formats import FORMATS, ImageArrays
from tasks.image_classification.cache import in_memory
from tasks.image_classification.evaluation import metrics
from tasks.image_classification.recipes import RECIPES, Recipe, apply_recipe
from tasks.image_classification.task import vit_defaults

TASK = zoo.get_task("image_classification")
TINY_VIT = json.dumps({"dim": 32, "depth": 1, "heads": 2})
FAST = ["--batch-size", "4", "--no-progress", "--precision", "fp32"]


def _image(label: int, rng: np.random.Generator, size: int = 16) -> Image.Image:
    """A noisy RGB image with a bright square whose corner depends on ``label``."""
    pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    row, col = divmod(label % 4, 2)
    half = size // 2
    pixels[row * half:(row + 1) * half, col * half:(col + 1) * half] = 200 + 10 * (label // 4)
    return Image.fromarray(pixels)


def _folder(root, classes: int = 2, per_class: int = 6, size: int = 16):
    """An ImageFolder fixture: ``classes`` class folders named c0, c1, ... of PNGs."""
    rng = np.random.default_rng(classes)
    for label in range(classes):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(per_class):
            _image(label, rng, size).save(root / f"c{label}" / f"{i}.png")
    return root


def _args(*argv: str) -> argparse.Namespace:
    """The namespace `zoo train image_classification ARGV` builds."""
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    TASK.add_arguments(parser)
    parser.set_defaults(backbone=TASK.default_backbone, head=TASK.default_head)
    return parser.parse_args(list(argv))


def _model(folder, *argv: str):
    args = _args("--data", f"imagefolder:{folder}", *argv)
    return TASK.build_model(args, TASK.datasets(args.data, "train"))


def test_transform_config_survives_save_and_load(tmp_path):
    folder = _folder(tmp_path / "images")
    model = _model(folder, "--backbone-args", TINY_VIT, "--image-size", "12", "--augment", "rand", "--mixup", "0.2")
    transform = model.preprocessing["transform"]
    assert transform["image_size"] == 12 and transform["augment"] == "rand" and transform["mixup_alpha"] == 0.2
    assert transform["mean"] == [0.485, 0.456, 0.406]  # files: ImageNet statistics
    assert model.backbone.cfg.img_size == 12 and model.backbone.cfg.patch_size == 3
    model.save(tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    assert loaded.preprocessing == model.preprocessing
    samples = [TASK.datasets(f"imagefolder:{folder}", "all")[i] for i in range(4)]
    batch, again = TASK.make_collate(model, train=False)(samples), TASK.make_collate(loaded, train=False)(samples)
    assert batch["inputs"].shape == (4, 3, 12, 12)
    assert torch.equal(batch["inputs"], again["inputs"])
    model.eval()
    torch.testing.assert_close(model(batch)["logits"], loaded(again)["logits"])
    files = [str(folder / "c0" / "0.png"), str(folder / "c1" / "1.png")]
    assert TASK.predict(model, files) == TASK.predict(loaded, files)
    train_batch = TASK.make_collate(model, train=True)(samples)
    assert train_batch["labels"].shape == (4, 2)  # mixup: soft targets the head's loss accepts
    assert torch.isfinite(model.loss(model(train_batch), train_batch)["loss"])


def test_builtin_defaults_size_the_vit_for_the_data(tmp_path):
    TASK.prepare(["digits"])
    model = TASK.build_model(_args("--data", "builtin:digits"), TASK.datasets("builtin:digits", "train"))
    assert (model.backbone.cfg.img_size, model.backbone.cfg.patch_size, model.backbone.cfg.dim) == (8, 2, 128)
    transform = model.preprocessing["transform"]
    assert transform["grayscale_source"] and transform["mean"] == [0.3049] * 3 and transform["hflip"] == 0.0
    assert model.head.labels == [str(d) for d in range(10)] and model.head.pooling == "cls"


def test_recipe_small_data_sets_exactly_its_values(tmp_path):
    args = _args("--data", f"imagefolder:{_folder(tmp_path / 'images')}", "--recipe", "small-data",
                 "--backbone-args", TINY_VIT)
    plain = _model(tmp_path / "images", "--backbone-args", TINY_VIT)
    model = TASK.build_model(args, TASK.datasets(args.data, "train"))
    cfg = model.backbone.cfg
    assert (cfg.stem, cfg.drop_path, cfg.lsa, cfg.patch_size) == ("conv", 0.0, False, 4)   # 16 px: 4 x 4 patches
    assert model.head.label_smoothing == 0.1
    assert model.preprocessing == plain.preprocessing   # the data pipeline is the one without a recipe
    # what args.json stores: the recipe's values merged into the flags
    assert args.backbone_args == {"stem": "conv", **json.loads(TINY_VIT)}
    assert args.head_args == {"label_smoothing": 0.1}


def test_flags_given_override_the_recipe(tmp_path):
    backbone_args = json.dumps({**json.loads(TINY_VIT), "stem": "spt"})
    model = _model(_folder(tmp_path / "images"), "--recipe", "small-data", "--backbone-args", backbone_args,
                   "--head-args", '{"label_smoothing": 0.0}')
    assert model.backbone.cfg.stem == "spt" and model.head.label_smoothing == 0.0


def test_without_a_recipe_nothing_changes(tmp_path):
    model = _model(_folder(tmp_path / "images"), "--backbone-args", TINY_VIT)
    transform = model.preprocessing["transform"]
    assert (model.backbone.cfg.stem, model.backbone.cfg.drop_path) == ("patch", 0.0)
    assert (transform["mixup_alpha"], transform["cutmix_alpha"]) == (0.0, 0.0)


def test_recipe_fills_only_unset_flags_and_leaves_a_backbone_without_its_fields_alone(monkeypatch):
    recipe = Recipe(flags={"augment": "trivial", "mixup": 0.8}, backbone_args={"stem": "conv"})
    monkeypatch.setitem(RECIPES, "test", recipe)
    args = argparse.Namespace(recipe="test", augment=None, mixup=0.0, backbone_args=None, head_args=None)
    apply_recipe(args, None)   # a timm backbone or one transferred from a checkpoint
    assert args.backbone_args is None and (args.augment, args.mixup) == ("trivial", 0.0)
    apply_recipe(args, {"stem": "patch", "dim": 192})
    assert args.backbone_args == {"stem": "conv"}


@pytest.mark.parametrize("stem, size, patch", [("patch", 28, 7), ("conv", 28, 4), ("spt", 28, 7), ("conv", 8, 2),
                                               ("spt", 6, 2), ("conv", 224, 16)])
def test_vit_defaults_give_each_stem_a_patch_it_can_use(stem, size, patch):
    assert vit_defaults("vit_tiny", size, is_default=True, stem=stem)["patch_size"] == patch


@pytest.mark.parametrize("backbone, backbone_args", [("vit_tiny", TINY_VIT),
                                                     ("timm/test_vit", '{"img_size": 16, "patch_size": 4}')])
def test_vit_and_timm_backbones_train_through_the_same_task_code(tmp_path, capsys, backbone, backbone_args):
    folder = _folder(tmp_path / "images")
    run = tmp_path / "run"
    TASK.command("train", ["--data", f"imagefolder:{folder}", "--backbone", backbone, "--backbone-args", backbone_args,
                           "--max-steps", "2", "--out", str(run), *FAST])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2] and "val_top1" in rows[-1] and "val_top5" in rows[-1]
    assert (run / "confusion_matrix.png").stat().st_size > 0 and (run / "curves.png").is_file()
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["backbone"]["name"] == backbone and config["preprocessing"]["transform"]["image_size"] == 16
    capsys.readouterr()
    result = TASK.command("eval", ["--checkpoint", str(run), "--data", f"imagefolder:{folder}", "--out",
                                   str(tmp_path / "eval")])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result and printed["split"] == "all" and printed["n"] == 12
    assert 0 <= printed["top1"] <= printed["top5"] == 1.0  # two classes: top-5 covers both
    assert set(printed["per_class_accuracy"]) == {"c0", "c1"}
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()
    matrix = json.loads((tmp_path / "eval" / "confusion_matrix.json").read_text())["matrix"]
    assert sum(map(sum, matrix)) == 12


def test_predict_prints_top5_and_writes_explanations(tmp_path, capsys):
    folder = _folder(tmp_path / "images", classes=6, per_class=2)
    for backbone, backbone_args, method in [("vit_tiny", TINY_VIT, "attention rollout"),
                                            ("timm/test_resnet", "{}", "gradient saliency")]:
        model = _model(folder, "--backbone", backbone, "--backbone-args", backbone_args)
        model.save(tmp_path / backbone)
        inputs = [str(folder / "c3" / "0.png"), str(tmp_path / "photo.jpg")]
        _image(1, np.random.default_rng(1), size=40).save(inputs[1])  # another size and format: resized
        capsys.readouterr()
        out = tmp_path / "explained" / backbone
        TASK.command("predict", ["--checkpoint", str(tmp_path / backbone), *inputs, "--explain", "--out", str(out)])
        lines = capsys.readouterr().out.strip().splitlines()
        assert [line.split(":")[0] for line in lines] == inputs
        ranked = lines[0].split(": ", 1)[1].split("  [")[0].split(", ")
        assert len(ranked) == 5 and all(entry.split()[0] in model.head.labels for entry in ranked)
        probabilities = [float(entry.split()[1]) for entry in ranked]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-3
        pictures = sorted(out.iterdir())
        assert [p.name for p in pictures] == ["000-0.png", "001-photo.png"]
        with Image.open(pictures[0]) as picture:     # input and overlay side by side, a colour bar, a title
            assert picture.format == "PNG" and picture.size[0] > 1.5 * picture.size[1] >= 300
        result = TASK.predict(zoo.load(tmp_path / backbone), [Image.open(inputs[0])], explain_to=tmp_path / "api")
        assert result[0]["explanation_method"] == method and len(result[0]["top"]) == 5
        assert result[0]["label"] == result[0]["top"][0]["label"]


def test_fine_tune_a_zoo_checkpoint_with_new_classes(tmp_path, capsys):
    source = _model(_folder(tmp_path / "three", classes=3), "--backbone-args", TINY_VIT, "--image-size", "12")
    source.save(tmp_path / "source")
    two = _folder(tmp_path / "two", classes=2)
    model = _model(two, "--init-backbone", str(tmp_path / "source"))
    assert model.backbone.zoo_spec == source.backbone.zoo_spec and len(model.head.labels) == 2
    assert model.preprocessing["transform"]["image_size"] == 12
    report = model.load_backbone_from(tmp_path / "source")
    assert not report.skipped and not report.missing
    torch.testing.assert_close(model.backbone.pos_embed, source.backbone.pos_embed)
    run = tmp_path / "run"
    TASK.command("train", ["--data", f"imagefolder:{two}", "--init-backbone", str(tmp_path / "source"),
                           "--max-steps", "1", "--out", str(run), *FAST])
    assert "skipped 0 (shape differs), 0 missing" in capsys.readouterr().out
    assert zoo.load(run / "best").head.labels == ["c0", "c1"]


def test_fine_tune_a_local_timm_checkpoint(tmp_path):
    reference = timm.create_model("test_resnet", pretrained=False)
    weights = tmp_path / "test_resnet.safetensors"
    save_file(reference.state_dict(), str(weights))
    folder = _folder(tmp_path / "images", classes=3)
    model = _model(folder, "--backbone", "timm/test_resnet",
                   "--backbone-args", json.dumps({"checkpoint_path": str(weights)}))
    _assert_same_weights(model.backbone.body, reference)
    assert model.preprocessing["transform"]["mean"] == pytest.approx(list(reference.pretrained_cfg["mean"]))
    assert model.head.fc.out_features == 3
    model.save(tmp_path / "model")
    weights.unlink()  # the fine-tuned checkpoint carries its own weights, not the path
    assert "checkpoint_path" not in (tmp_path / "model" / "config.json").read_text()
    _assert_same_weights(zoo.load(tmp_path / "model").backbone.body, reference)


def _assert_same_weights(body: torch.nn.Module, reference: torch.nn.Module) -> None:
    """Every tensor of timm's features_only ``body`` equals the full model's tensor of that name."""
    expected = reference.state_dict()
    state = body.state_dict()
    assert len(state) > 10 and set(state) <= set(expected)
    for name, tensor in state.items():
        torch.testing.assert_close(tensor, expected[name], msg=name)


def test_datasets_are_decoded_into_memory_with_skips_counted(tmp_path):
    folder = _folder(tmp_path / "images")
    (folder / "c1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(UserWarning, match="broken.png"):
        files = read_spec(TASK.name, f"imagefolder:{folder}", "all", FORMATS, BUILTIN_SETS)
    cached = in_memory(files)
    assert isinstance(cached, ImageArrays) and cached.skipped == 1 == files.skipped
    assert cached.images.shape == (12, 16, 16, 3) and cached.classes == files.classes
    for i in (0, 7, 11):
        assert np.array_equal(np.asarray(cached[i]["image"]), np.asarray(files[i]["image"]))
        assert cached[i]["label"] == files[i]["label"]
    _image(0, np.random.default_rng(0), size=20).save(folder / "c0" / "big.png")
    with pytest.warns(UserWarning, match="broken.png"):
        mixed = read_spec(TASK.name, f"imagefolder:{folder}", "all", FORMATS, BUILTIN_SETS)
    assert in_memory(mixed) is mixed  # mixed sizes stay on disk
    assert in_memory(files, limit_bytes=100) is files


def test_metrics_top_k_per_class_and_confusion_matrix(tmp_path):
    logits = torch.tensor([[3.0, 2, 1, 0, 0, 0], [0, 3, 2, 1, 0, 0], [3, 0, 0, 0, 0, 2], [0, 0, 0, 0, 1, 9]])
    target = torch.tensor([0, 2, 5, 5])
    result = metrics(logits, target, list("abcdef"), tmp_path)
    assert result["top1"] == pytest.approx(0.5) and result["top5"] == pytest.approx(1.0)
    assert result["per_class_accuracy"] == {"a": 1.0, "b": None, "c": 0.0, "d": None, "e": None, "f": 0.5}
    saved = json.loads((tmp_path / "confusion_matrix.json").read_text())
    assert saved["matrix"][5] == [1, 0, 0, 0, 0, 1] and (tmp_path / "confusion_matrix.png").is_file()


def test_bad_inputs_are_named(tmp_path):
    folder = _folder(tmp_path / "images")
    model = _model(folder, "--backbone-args", TINY_VIT)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        TASK.predict(model, [str(tmp_path / "missing.png")])
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png: not a readable image"):
        TASK.predict(model, [str(tmp_path / "notes.png")])
    with pytest.raises(ValueError, match="text backbone"):
        _model(folder, "--backbone", "text_encoder_tiny")
    bare = zoo.create_model("vit_tiny", backbone_args={"dim": 32, "depth": 1, "heads": 2}, num_classes=2)
    with pytest.raises(ValueError, match="preprocessing"):
        TASK.predict(bare, [str(folder / "c0" / "0.png")])
    bare.save(tmp_path / "bare")
    with pytest.raises(ValueError, match="not an image classification checkpoint"):
        _model(folder, "--init-backbone", str(tmp_path / "bare"))
    with pytest.raises(SystemExit):         # refused at parse time: --hflip is a probability
        _args("--hflip", "2")
    unknown = _folder(tmp_path / "other", classes=3)
    with pytest.raises(ValueError, match=r"classes \['c2'\] are not among"):
        TASK.evaluate(model, TASK.datasets(f"imagefolder:{unknown}", "all"), EvalOptions())


@pytest.mark.slow
def test_learns_digits(tmp_path):
    TASK.prepare(["digits"])
    run = tmp_path / "run"
    small = json.dumps({"dim": 64, "depth": 2, "heads": 4})
    TASK.command("train", ["--data", "builtin:digits", "--backbone-args", small, "--batch-size", "64", "--lr", "3e-3",
                           "--warmup-steps", "20", "--max-steps", "150", "--precision", "fp32", "--no-progress",
                           "--out", str(run)])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.mean([r["train_loss"] for r in rows[-10:]]) < np.mean([r["train_loss"] for r in rows[:10]]) - 0.5
    result = TASK.command("eval", ["--checkpoint", str(run), "--data", "builtin:digits", "--precision", "fp32"])
    assert result["split"] == "test" and result["n"] == 180
    assert result["top1"] > 0.5  # chance is 0.1


@pytest.mark.parametrize("avx512_bf16, amx", [(False, False), (True, False), (False, True)])
def test_default_precision_is_fp32_on_every_cpu_whatever_its_bf16_units(monkeypatch, avx512_bf16: bool,
                                                                        amx: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"} | ({"avx512_bf16"} if avx512_bf16 else set())
                        | ({"amx_bf16", "amx_tile"} if amx else set()))
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    TASK.add_arguments(parser)
    assert parser.parse_args([]).precision == "fp32"
    assert parser.parse_args(["--precision", "auto"]).precision == "auto"   # auto stays the user's choice


@pytest.mark.parametrize("bf16_supported", [False, True])
def test_default_precision_on_a_gpu_follows_its_bf16_support(monkeypatch, bf16_supported: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    TASK.add_arguments(parser)
    assert parser.parse_args([]).precision == ("bf16" if bf16_supported else "fp32")
