"""`zoo explain TASK` (issue 19 item 8) on tiny random models of every task (the fixtures of test_task_contract).

Each explanation is checked for its shapes, a sanity property of its method (integrated gradients'
completeness: the attributions add up to score(input) - score(baseline); attention rows sum to 1; the
saliency of a planted box lies inside it), the files it writes and its one-line errors.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import zoo
from tasks.asr.audio import collate_audio, load_audio
from tasks.asr.explain import transcript_log_prob
from tasks.asr.units import encode_targets
from tasks.detection.explain import box_saliency
from tasks.engine.attention_maps import attention_weights, recorded_attention
from tasks.engine.explain_command import explain
from tasks.image_classification.explain import explain as image_explain
from tasks.sentiment.task import encode
from tasks.text_generation.prompts import encode_prompts
from tests.test_task_contract import FIXTURES, _train_args, saved_tiny_model
from zoo.cli import main
from zoo.errors import ZooError
from zoo.layers.attention import Attention, attention_mask
from zoo.layers.position import RotaryEmbedding

pytestmark = pytest.mark.usefixtures("one_thread")
def _pictures(result: dict[str, Any], suffixes: tuple[str, ...] = (".png",)) -> None:
    assert sorted(Path(f).suffix for f in result["files"]) == sorted(suffixes)
    for file in result["files"]:
        if file.endswith(".png"):
            with Image.open(file) as picture:
                assert picture.format == "PNG" and picture.size[0] >= 500 and picture.size[1] >= 150


def test_sentiment_integrated_gradients_add_up_to_the_logit_difference(tmp_path_factory, tmp_path) -> None:
    folder, _ = saved_tiny_model("sentiment", tmp_path_factory)
    text = "great and superb, not dull"
    (result,) = explain(zoo.get_task("sentiment"), str(folder), [text], out=tmp_path)
    model = zoo.load(folder).eval()
    ids, mask = encode(model, [text])
    assert len(result["tokens"]) == len(result["attributions"]) == ids.shape[1]
    with torch.no_grad():
        logits = model({"inputs": ids, "mask": mask})["logits"][0]
        baseline = model({"inputs": torch.full_like(ids, model.tokenizer.pad_id), "mask": mask})["logits"][0]
    target = model.head.labels.index(result["prediction"])
    assert result["score"] == pytest.approx(float(logits.softmax(-1)[target]), abs=1e-5)
    assert sum(result["attributions"]) == pytest.approx(float(logits[target] - baseline[target]), abs=1e-3)
    assert any(abs(a) > 1e-4 for a in result["attributions"])
    _pictures(result, (".png", ".html"))
    page = Path(result["files"][1]).read_text(encoding="utf-8")
    assert result["prediction"] in page and "integrated gradients" in page and page.count("<span") == ids.shape[1]


def test_sentiment_gradient_x_input_differs_from_integrated_gradients(tmp_path_factory, tmp_path) -> None:
    folder, _ = saved_tiny_model("sentiment", tmp_path_factory)
    task = zoo.get_task("sentiment")
    ig, = explain(task, str(folder), ["great and superb"], "integrated_gradients", tmp_path / "ig")
    gxi, = explain(task, str(folder), ["great and superb"], "gradient_x_input", tmp_path / "gxi")
    assert gxi["method"] == "gradient_x_input" and gxi["delta"] is None and ig["delta"] is not None
    assert len(gxi["attributions"]) == len(ig["attributions"]) and gxi["attributions"] != ig["attributions"]


def test_text_generation_attributions_of_the_prompt_for_the_next_token(tmp_path_factory, tmp_path) -> None:
    folder, _ = saved_tiny_model("text_generation", tmp_path_factory)
    task = zoo.get_task("text_generation")
    ig, = explain(task, str(folder), ["the cat sat"], out=tmp_path / "ig")
    attention, = explain(task, str(folder), ["the cat sat"], "attention", tmp_path / "attention")
    model = zoo.load(folder).eval()
    batch = encode_prompts(model, ["the cat sat"], 1)
    with torch.no_grad():
        logits = model(batch)["logits"][0, -1]
        baseline = model({**batch, "inputs": torch.full_like(batch["inputs"], model.tokenizer.pad_id)})["logits"][0, -1]
    target = int(logits.argmax())
    assert ig["prediction"] == model.tokenizer.decode([target]) and len(ig["tokens"]) == batch["inputs"].shape[1]
    assert sum(ig["attributions"]) == pytest.approx(float(logits[target] - baseline[target]), abs=1e-3)
    assert attention["tokens"] == ig["tokens"] and attention["prediction"] == ig["prediction"]
    assert sum(attention["attributions"]) == pytest.approx(1.0, abs=1e-5) and min(attention["attributions"]) >= 0
    _pictures(attention, (".png", ".html"))


@pytest.mark.parametrize("kind", ["self", "causal_rope", "cross_masked"])
def test_recorded_attention_weights_reproduce_the_modules_output(kind: str) -> None:
    """The recomputed weights times the values, projected, are exactly what the SDPA module returned."""
    torch.manual_seed(0)
    cross = kind == "cross_masked"
    attn = Attention(16, 2, cross=cross, context_dim=12 if cross else None).eval()
    x = torch.randn(2, 5, 16)
    kwargs: dict[str, Any] = {}
    if kind == "causal_rope":
        kwargs = {"is_causal": True, "rope": RotaryEmbedding(8), "positions": torch.arange(5)}
    if cross:
        context = torch.randn(2, 7, 12)
        kwargs = {"context_kv": attn.project_context(context),
                  "mask": attention_mask(torch.arange(7)[None].expand(2, -1) < torch.tensor([[7], [4]]), 5, False)[0]}
    with recorded_attention([attn]) as weights, torch.no_grad():
        expected = attn(x, **kwargs)
    (recorded,) = weights
    assert recorded.shape == (2, 2, 5, 7 if cross else 5)
    torch.testing.assert_close(recorded.sum(dim=-1), torch.ones(2, 2, 5))
    if cross:
        assert float(recorded[1, :, :, 4:].abs().max()) == 0.0          # padding gets no weight
        values = kwargs["context_kv"][1]
    else:
        values = attn.qkv(x).view(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)[2]
    with torch.no_grad():
        rebuilt = attn.proj((recorded @ values).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(rebuilt, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(attention_weights(attn, x, **kwargs), recorded)


def test_translation_alignment_is_target_by_source_with_rows_summing_to_one(tmp_path_factory, tmp_path) -> None:
    folder, _ = saved_tiny_model("translation", tmp_path_factory)
    (result,) = explain(zoo.get_task("translation"), str(folder), ["forty-two"], out=tmp_path)
    alignment = np.array(result["alignment"])
    model = zoo.load(folder)
    assert alignment.shape == (len(result["target_tokens"]), len(model.tokenizer.encode("forty-two")))
    assert result["target_tokens"][-1] == "<eos>" and (alignment >= 0).all()
    np.testing.assert_allclose(alignment.sum(axis=1), 1.0, atol=1e-5)
    assert result["prediction"] == zoo.get_task("translation").predict(model, ["forty-two"], max_new_tokens=None)[0]
    assert 0.0 < result["score"] <= 1.0
    _pictures(result)


def test_asr_frame_saliency_integrated_gradients_complete(tmp_path_factory, tmp_path) -> None:
    folder, inputs = saved_tiny_model("asr", tmp_path_factory)
    (result,) = explain(zoo.get_task("asr"), str(folder), [inputs[0]], out=tmp_path)
    model = zoo.load(folder).eval()
    wave = load_audio(inputs[0], 16000)
    batch = collate_audio([{"audio": wave, "text": result["prediction"]}])
    with torch.no_grad():
        feats, frames = model.backbone.frontend(batch["inputs"], batch["mask"])
    targets = dict(zip(("targets", "target_mask"), encode_targets(model, [result["prediction"]])))

    def score(f: torch.Tensor) -> float:
        with torch.no_grad():
            return float(transcript_log_prob(model.head(model.backbone.encode_features(f, frames), targets), targets)[0])

    attributions = np.array(result["attributions"])
    assert attributions.shape == tuple(feats.shape[1:]) and len(result["frame_saliency"]) == feats.shape[1]
    assert result["score"] == pytest.approx(score(feats), abs=1e-4) and result["score"] < 0
    difference = score(feats) - score(torch.zeros_like(feats))
    assert attributions.sum() - difference == pytest.approx(result["delta"], abs=1e-4)   # captum's gap is ours
    assert attributions.sum() == pytest.approx(difference, abs=0.03 * abs(difference) + 1e-3)
    np.testing.assert_allclose(result["frame_saliency"], np.abs(attributions).sum(axis=1), rtol=1e-5)
    _pictures(result)


class _PlantedDetector(nn.Module):
    """Finds one box at a fixed place whose score is a sigmoid of the mean pixel inside it."""

    box = (8, 4, 20, 14)   # x1, y1, x2, y2

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(3.0))
        self.head = self

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x1, y1, x2, y2 = self.box
        return {"logits": self.weight * batch["inputs"][:, :, y1:y2, x1:x2].mean(dim=(1, 2, 3))}   # (B,)

    @torch.no_grad()
    def decode(self, outputs: dict[str, torch.Tensor], batch: Any = None, **options: Any) -> list[dict]:
        return [{"boxes": torch.tensor([self.box], dtype=torch.float), "scores": score.sigmoid()[None],
                 "labels": torch.tensor([0])} for score in outputs["logits"]]


def test_detection_saliency_of_a_planted_box_lies_inside_it() -> None:
    batch = {"inputs": torch.randn(1, 3, 24, 32), "image_sizes": torch.tensor([[24, 32]])}
    found, maps = box_saliency(_PlantedDetector(), batch, score_threshold=0.0, max_boxes=4)
    assert maps.shape == (1, 24, 32) and not found["scores"].requires_grad
    x1, y1, x2, y2 = _PlantedDetector.box
    inside = torch.zeros(24, 32, dtype=torch.bool)
    inside[y1:y2, x1:x2] = True
    assert float(maps[0][inside].min()) > 0 and float(maps[0][~inside].abs().max()) == 0.0


def test_detection_cli_explains_each_box(tmp_path_factory, tmp_path, capsys) -> None:
    folder, inputs = saved_tiny_model("detection", tmp_path_factory)
    main(["explain", "detection", "--checkpoint", str(folder), inputs[0], "--out", str(tmp_path),
          "--score-threshold", "0", "--max-boxes", "2", "--json"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    explanation = line["explanation"]
    assert line["input"] == inputs[0] and len(explanation["detections"]) == 2
    assert explanation["prediction"] == explanation["detections"][0]["label"]
    assert explanation["score"] == explanation["detections"][0]["score"] >= explanation["detections"][1]["score"]
    _pictures(explanation)


def test_image_classification_names_label_probability_and_method(tmp_path_factory, tmp_path, capsys) -> None:
    folder, inputs = saved_tiny_model("image_classification", tmp_path_factory)
    main(["explain", "image_classification", "--checkpoint", str(folder), *inputs, "--out", str(tmp_path),
          "--method", "gradient_saliency"])
    lines = capsys.readouterr().out.strip().splitlines()
    predicted = zoo.get_task("image_classification").predict(zoo.load(folder), inputs)
    assert len(lines) == 2
    for line, prediction in zip(lines, predicted):
        assert f"{prediction['label']} (probability {prediction['probability']:.4g}) [gradient saliency]" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000-0.png", "001-1.png"]


def test_bad_input_is_one_line(tmp_path_factory, tmp_path, capsys) -> None:
    folder, _ = saved_tiny_model("sentiment", tmp_path_factory)
    cases = [(["explain", "sentiment", "--checkpoint", str(folder), "ok", "--method", "rollout"], "invalid choice"),
             (["explain", "sentiment", "--checkpoint", str(folder)], "give at least one INPUT"),
             (["explain", "detection", "--checkpoint", str(folder), str(tmp_path / "missing.png")],
              "missing.png: no such file"),
             (["explain", "translation", "--checkpoint", str(folder), "ok"], "is a sentiment model"),
             (["explain", "sentiment", "--checkpoint", str(tmp_path / "nothing"), "ok"], "--checkpoint")]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code != 0
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and expected in error, (argv, error)


def test_rollout_is_refused_for_a_backbone_without_a_class_token() -> None:
    backbone = nn.Conv2d(3, 4, 3)
    backbone.zoo_spec = {"name": "timm/resnet18"}
    with pytest.raises(ZooError, match="attention_rollout needs the zoo's ViT with a class token; backbone "
                                       "'timm/resnet18'"):
        image_explain(SimpleNamespace(backbone=backbone), torch.zeros(1, 3, 8, 8), "attention_rollout")


@pytest.mark.parametrize("head", ["ctc", "seq2seq"])
def test_transcript_log_prob_is_the_heads_own_loss_times_the_units(head: str, tmp_path: Path) -> None:
    """CTC: -loss x target units (the head's loss is a mean per unit); seq2seq: -nll x (units + EOS)."""
    task, fixture = zoo.get_task("asr"), FIXTURES["asr"]
    spec, _ = fixture.write(tmp_path)
    argv = [*fixture.argv, "--head", head] + (["--head-args", '{"depth": 1, "heads": 2, "dim": 32}']
                                              if head == "seq2seq" else [])
    model = task.build_model(_train_args(task, ["--data", spec, *argv]), task.datasets(spec, "train")).eval()
    targets, target_mask = encode_targets(model, ["one two"])
    batch = {"inputs": torch.randn(1, 8000) * 0.1, "mask": torch.ones(1, 8000, dtype=torch.bool),
             "targets": targets, "target_mask": target_mask}
    with torch.no_grad():
        outputs = model(batch)
        losses = model.loss(outputs, batch)
    units = targets.shape[1]
    expected = -float(losses["loss"]) * units if head == "ctc" else -float(losses["nll"]) * (units + 1)
    assert float(transcript_log_prob(outputs, batch)[0]) == pytest.approx(expected, rel=1e-5)
