"""The deploy suite's detection rows (issue 14): a detection ONNX export scored by the numpy decoding it ships
(the same COCO metrics as the PyTorch model), int8 of a convolutional detector, magnitude pruning where
structured pruning does not apply, and a narrower timm student distilled from the teacher; on a run of the
default backbone (timm/mobilenetv3_small_100) the tests train on scenes they write."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zoo
from benchmarks import deploy
from benchmarks.run import main
from tasks.engine.evaluation import EvalOptions
from tasks.engine.export_command import export
from tests.test_detection_task import NO_AUGMENTATION, _coco
from zoo.errors import ZooError

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ["--rounds", "2", "--block-seconds", "0.01", "--warmup", "1", "--finetune-steps", "2",
        "--distill-steps", "2", "--deploy-batch", "4", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(RUNS, data SPEC): RUNS/detection trained 40 steps on 60 scenes, default backbone, a small FCOS head."""
    root = tmp_path_factory.mktemp("deploy-detection")
    spec = f"coco:{_coco(root / 'scenes', 60, seed=0)}"
    torch.manual_seed(0)
    zoo.get_task("detection").command("train", [
        "--data", spec, "--out", str(root / "runs" / "detection"), "--head-args", '{"dim": 32, "tower_depth": 1}',
        "--transform", json.dumps(NO_AUGMENTATION), "--batch-size", "8", "--lr", "5e-3", "--warmup-steps", "5",
        "--max-steps", "40", "--eval-every", "0", "--no-progress"])
    return root / "runs", spec


@pytest.mark.slow     # one ONNX export and 30 s of onnxruntime and eval
def test_the_onnx_export_scores_the_metrics_of_the_pytorch_model(runs: tuple[Path, str], tmp_path: Path) -> None:
    root, spec = runs
    task = zoo.get_task("detection")
    model = zoo.load(root / "detection" / "best", map_location="cpu").eval()
    onnx = deploy.ExportedDetector(model, export(task, str(root / "detection"), "onnx", tmp_path / "onnx")).eval()
    dataset = task.for_model(task.datasets(spec, "all"), model)
    expected = task.evaluate(model, dataset, EvalOptions(progress=False))
    assert 0.1 < expected["map"] < 0.9 and 0.1 < expected["map_75"] < 0.9   # neither all right nor all wrong
    # onnxruntime's kernels round differently from PyTorch's, and by CPU (AVX-512, AMX): a near tie of two
    # scores may swap, which moves mAP by about 1e-6 (seen on an AMX Xeon); a wrong export moves it by tenths
    assert task.evaluate(onnx, dataset, EvalOptions(progress=False)) == pytest.approx(expected, abs=1e-3)


@pytest.mark.slow     # builds all six variants: an export, its int8, int8 PyTorch, a fine-tune, a distillation
def test_every_detection_variant_is_made_and_scored(runs: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = runs
    assert main(["--suite", "deploy", "--runs", str(root), "--out", str(tmp_path), "--task", "detection", *FAST]) == 0
    rows = {r["variant"]: r for r in json.loads(next(tmp_path.glob("deploy-*.json")).read_text())["rows"]}
    assert set(rows) == set(deploy.VARIANTS) and not any(r.get("error") or r.get("metric_error") for r in rows.values())
    fp32 = rows["fp32"]
    assert fp32["metric"] > 0.5
    assert rows["onnx"]["metric"] == pytest.approx(fp32["metric"], abs=1e-3)   # kernels' rounding, as above
    assert 0.0 <= rows["onnx-int8"]["metric"] <= 1.0
    assert rows["int8"]["megabytes"] < fp32["megabytes"] / 2 and abs(rows["int8"]["metric"] - fp32["metric"]) < 0.2
    int8 = json.loads((Path(rows["int8"]["folder"]) / "config.json").read_text())["quantization"]
    assert len(int8["conv"]) > 50 and int8["linear"] == []          # every conv of backbone and head
    report = json.loads((Path(rows["pruned"]["folder"]) / "prune.json").read_text())
    assert report["structured"] == "none" and report["scope"] == "layer"
    assert report["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert rows["pruned"]["note"] == f"magnitude per layer, sparsity {report['sparsity']:.3f}"
    assert rows["pruned"]["parameters"] == fp32["parameters"]       # zeros inside the same matrices
    student = json.loads((Path(rows["distilled"]["folder"]) / "config.json").read_text())
    assert student["backbone"]["name"] == "timm/mobilenetv3_small_050"
    assert rows["distilled"]["parameters"] < fp32["parameters"] / 2
    table = next(tmp_path.glob("deploy-*.md")).read_text()
    assert "| detection | pruned (magnitude per layer, sparsity 0.300) |" in table


# ---- the pieces, without a trained run ---------------------------------------------------------------------

class _Graph:
    """A fake detection export: records the input shapes it ran on; at every image three points of two
    classes, the first two boxes overlapping (IoU 0.8), the third past the right edge of a 30-wide image."""

    sidecar = {"inputs": [{"name": "inputs"}], "candidates": 1000, "nms_iou": 0.6}
    shapes: list[tuple[int, ...]] = []

    def __init__(self, folder: Path) -> None:
        pass

    def run(self, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        inputs = arrays["inputs"]
        self.shapes.append(inputs.shape)
        scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.5, 0.0]], dtype=np.float32)     # (N, C)
        boxes = np.array([[2, 2, 20, 20], [3, 3, 21, 21], [25, 25, 60, 39]], dtype=np.float32)     # (N, 4)
        rows = inputs.shape[0]
        return {"scores": np.tile(scores, (rows, 1, 1)), "boxes": np.tile(boxes, (rows, 1, 1))}


def test_exported_detector_runs_each_image_at_its_size_and_decodes_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy, "Exported", _Graph)
    _Graph.shapes = []
    detector = deploy.ExportedDetector(torch.nn.Linear(1, 1), Path("."))
    batch = {"inputs": torch.zeros(3, 3, 40, 50), "image_sizes": torch.tensor([[40, 30], [32, 50], [40, 30]])}
    outputs = detector(batch)
    assert sorted(_Graph.shapes) == [(1, 3, 32, 50), (2, 3, 40, 30)]     # no padding reaches the graph
    per_class = detector.decode(outputs, batch, score_threshold=0.01, max_detections=10)
    assert [d["labels"].tolist() for d in per_class] == [[0, 1, 0]] * 3    # overlapping, of two classes: both kept
    assert [float(d["boxes"][2, 2]) for d in per_class] == [30.0, 50.0, 30.0]   # clipped to each image's width
    agnostic = detector.decode(outputs, batch, score_threshold=0.01, max_detections=10, class_agnostic=True)
    assert [d["scores"].tolist() for d in agnostic] == [[pytest.approx(0.9), 0.5]] * 3
    assert agnostic[0]["labels"].dtype == torch.int64


def test_a_timm_student_is_the_widest_variant_at_most_half_as_wide() -> None:
    assert deploy.smaller_timm("timm/mobilenetv3_small_100") == "timm/mobilenetv3_small_050"
    assert deploy.smaller_timm("timm/mnasnet_100") == "timm/mnasnet_050"
    assert deploy.smaller_timm("timm/mobilenetv3_large_100") == "timm/mobilenetv3_large_075"  # none <= _050
    with pytest.raises(ZooError, match=r"no narrower mobilenetv3_small_\* variant.*--backbone NAME"):
        deploy.smaller_timm("timm/mobilenetv3_small_050")
    with pytest.raises(ZooError, match=r"'timm/resnet18'.*no timm width suffix.*--backbone NAME"):
        deploy.smaller_timm("timm/resnet18")


def _detector(backbone: str, **args: Any) -> zoo.ZooModel:
    model = zoo.create_model(backbone, "fcos", task="detection", num_classes=2, backbone_args=args or None, dim=16)
    return model


def test_the_student_flags_halve_depth_or_dim_or_narrow_a_timm_backbone() -> None:
    vit = _detector("vit_tiny", img_size=64, patch_size=8, dim=32, depth=1, heads=2)
    assert deploy.student_backbone(vit)[0] == "--backbone-args"
    assert json.loads(deploy.student_backbone(vit)[1]) == dict(img_size=64, patch_size=8, dim=16, depth=1, heads=2)
    deep = _detector("vit_tiny", img_size=64, patch_size=8, dim=32, depth=4, heads=2)
    student = json.loads(deploy.student_backbone(deep)[1])
    assert student == dict(img_size=64, patch_size=8, dim=32, depth=2, heads=2)
    teacher_blocks = sum(p.numel() for p in deep.backbone.stack.parameters())
    half = zoo.create_model("vit_tiny", "fcos", task="detection", num_classes=2, backbone_args=student, dim=16)
    assert sum(p.numel() for p in half.backbone.stack.parameters()) == teacher_blocks // 2
    registered = zoo.BACKBONES.meta("text_encoder_tiny")["config"]["depth"]       # arguments that leave depth out
    text = zoo.create_model("text_encoder_tiny", "classification", num_classes=2, backbone_args=dict(vocab_size=50))
    assert json.loads(deploy.student_backbone(text)[1]) == dict(vocab_size=50, depth=registered // 2)
    assert deploy.student_backbone(_detector("timm/mobilenetv3_small_100")) == ["--backbone",
                                                                                 "timm/mobilenetv3_small_050"]
