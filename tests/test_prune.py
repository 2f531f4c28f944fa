"""`zoo prune` (issue 14 item 4): structured pruning removes whole heads and MLP channels (smaller
matrices, sizes in config.json, zoo.load round trip), the least important ones; amount 0 changes
nothing; magnitude pruning reaches the asked sparsity and keeps it through the fine-tune."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from tasks.engine.prune_command import REPORT, prune
from tests.test_sentiment_task import _reviews, _write_csv
from zoo.cli import main
from zoo.errors import ZooError
from zoo.pruning import head_scores, kept, prune_magnitude, prune_model, sparsity

pytestmark = pytest.mark.usefixtures("one_thread")


def _text_model(mlp: str = "gelu") -> zoo.ZooModel:
    torch.manual_seed(0)
    return zoo.create_model("text_encoder_tiny", "classification", num_classes=3, task="sentiment",
                            backbone_args={"vocab_size": 50, "dim": 32, "depth": 2, "heads": 4, "mlp": mlp}).eval()


def _tokens() -> dict[str, torch.Tensor]:
    inputs = torch.randint(0, 50, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 5:] = False
    return {"inputs": inputs, "mask": mask}


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_structured_pruning_shrinks_matrices_and_round_trips(mlp: str, tmp_path: Path) -> None:
    model = _text_model(mlp)
    width = model.backbone.stack.blocks[0].mlp.fc2.in_features
    pruned, report, masks = zoo.prune_model(model, 0.5, "both")
    assert masks == {} and report.parameters_after < report.parameters_before
    assert report.parameters_after == sum(p.numel() for p in pruned.parameters())
    assert report.layer_heads == [2, 2] and report.layer_mlp == [width - round(width / 2)] * 2
    attn = pruned.backbone.stack.blocks[0].attn
    assert attn.qkv.weight.shape == (3 * 2 * 8, 32) and attn.proj.weight.shape == (32, 16)
    pruned.save(tmp_path)
    args = json.loads((tmp_path / "config.json").read_text())["backbone"]["args"]
    assert args["layer_heads"] == [2, 2] and args["layer_mlp"] == report.layer_mlp
    loaded = zoo.load(tmp_path)
    batch = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch)["logits"], pruned(batch)["logits"])


@pytest.mark.parametrize("structured", ["heads", "mlp", "both"])
def test_amount_zero_keeps_the_outputs(structured: str) -> None:
    model = _text_model()
    pruned, report, _ = prune_model(model, 0.0, structured)
    assert report.parameters_after == report.parameters_before
    batch = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(pruned(batch)["logits"], model(batch)["logits"])


def test_the_least_important_heads_go() -> None:
    model = _text_model()
    attn = model.backbone.stack.blocks[0].attn
    with torch.no_grad():       # head 1 and head 3 of layer 0 made nearly silent
        for head in (1, 3):
            attn.qkv.weight.view(3, 4, 8, 32)[:, head] *= 1e-3
            attn.proj.weight.view(32, 4, 8)[:, head] *= 1e-3
    scores = head_scores(attn.qkv.weight, attn.proj.weight, 4)
    assert kept(scores, 0.5).tolist() == [0, 2]
    kept_weights = attn.qkv.weight.view(3, 4, 8, 32)[:, [0, 2]].reshape(-1, 32).clone()
    pruned, _, _ = prune_model(model, 0.5, "heads")
    torch.testing.assert_close(pruned.backbone.stack.blocks[0].attn.qkv.weight, kept_weights)


def test_speech_conformer_and_vit_backbones_prune() -> None:
    for backbone, args, inputs in [
        ("speech_encoder_tiny", {"dim": 32, "depth": 1, "heads": 2, "n_mels": 40}, torch.randn(2, 3200)),
        ("vit_tiny", {"img_size": 32, "patch_size": 8, "dim": 32, "depth": 2, "heads": 4}, torch.randn(2, 3, 32, 32)),
    ]:
        model = zoo.create_model(backbone, "classification", num_classes=2, backbone_args=args).eval()
        pruned, report, _ = prune_model(model, 0.5, "both")
        assert report.parameters_after < report.parameters_before
        assert pruned(inputs)["logits"].shape == (2, 2)


def test_magnitude_pruning_reaches_the_amount() -> None:
    model = _text_model()
    pruned, report, masks = prune_model(model, 0.3, "none")
    assert report.parameters_after == report.parameters_before
    assert report.sparsity == pytest.approx(0.3, abs=1e-4) and sparsity(pruned) == report.sparsity
    assert masks and all(not bool(pruned.get_parameter(n)[~m].any()) for n, m in masks.items())


def test_layer_scope_prunes_every_layer_by_the_amount_where_a_global_ranking_empties_one() -> None:
    def model() -> torch.nn.Module:
        layers = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 16))
        order = torch.randperm(256, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():                  # the second layer's weights all smaller than the first's
            layers[0].weight.copy_(torch.linspace(0.5, 1.0, 256)[order].reshape(16, 16))
            layers[1].weight.copy_(torch.linspace(-0.01, 0.01, 256)[order].reshape(16, 16))
        return layers

    def zeros(layers: torch.nn.Module) -> list[float]:
        return [float((layer.weight == 0).float().mean()) for layer in layers]

    ranked_together, per_layer = model(), model()
    prune_magnitude(ranked_together, 0.5)
    prune_magnitude(per_layer, 0.5, "layer")
    assert zeros(ranked_together) == [0.0, 1.0]
    assert zeros(per_layer) == [0.5, 0.5]
    assert sparsity(per_layer) == sparsity(ranked_together) == 0.5
    kept = per_layer[1].weight != 0                  # the largest half of the small layer's weights
    assert per_layer[1].weight[kept].abs().min() >= model()[1].weight[~kept].abs().max()
    with pytest.raises(ZooError, match="--magnitude-scope rows: unknown; use one of global, layer"):
        prune_magnitude(model(), 0.5, "rows")


def test_refusals_are_one_clear_line() -> None:
    model = _text_model()
    with pytest.raises(ZooError, match="--amount 1.0"):
        prune_model(model, 1.0, "heads")
    with pytest.raises(ZooError, match="--structured rows"):
        prune_model(model, 0.3, "rows")
    timm = zoo.create_model("timm/resnet18", "classification", num_classes=2, backbone_args={"pretrained": False})
    with pytest.raises(ZooError, match="use --structured none"):
        prune_model(timm, 0.3, "heads")


def _checkpoint(tmp_path: Path) -> tuple[str, Path]:
    """A tiny sentiment model (random weights) saved with the tokenizer of a CSV the test writes."""
    from tests.test_task_contract import _train_args

    task = zoo.get_task("sentiment")
    spec = f"csv:{_write_csv(tmp_path / 'reviews.csv', _reviews(40, seed=3))}"
    args = _train_args(task, ["--data", spec, "--vocab-size", "64", "--max-len", "32",
                              "--backbone-args", json.dumps({"dim": 32, "depth": 2, "heads": 4})])
    model = task.build_model(args, task.datasets(spec, "train"))
    model.save(tmp_path / "model")
    return spec, tmp_path / "model"


@pytest.mark.parametrize(("structured", "scope"), [("both", None), ("none", None), ("none", "layer")])
def test_prune_command_fine_tunes_and_saves(structured: str, scope: str | None, tmp_path: Path) -> None:
    spec, folder = _checkpoint(tmp_path)
    out, report = prune(zoo.get_task("sentiment"), str(folder), 0.5, tmp_path / "pruned", structured,
                        finetune_steps=2, data=spec, device="cpu", progress=False, magnitude_scope=scope)
    saved = json.loads((out / REPORT).read_text())
    assert saved["scope"] == (None if structured != "none" else scope or "global")
    assert saved["finetune_steps"] == 2 and (out / "finetune" / "metrics.jsonl").is_file()
    model = zoo.load(out)
    if structured == "none":        # the fine-tune kept the zeros
        assert sparsity(model) == pytest.approx(0.5, abs=1e-3) and saved["sparsity"] == report.sparsity
    else:
        assert sum(p.numel() for p in model.parameters()) == report.parameters_after < report.parameters_before
    assert len(zoo.get_task("sentiment").predict(model, ["great", "dull"])) == 2


def test_cli_refuses_bad_flags_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["prune", "sentiment", "--checkpoint", str(tmp_path), "--amount", "1.5", "--out", str(tmp_path / "o")])
    assert "--amount" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prune", "sentiment", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: --checkpoint") and "\n" not in err
    with pytest.raises(SystemExit):
        main(["prune", "sentiment", "--checkpoint", str(tmp_path), "--magnitude-scope", "layer",
              "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert "--magnitude-scope applies to --structured none" in err and "\n" not in err
