"""The detection Task: a short learning run, `zoo eval` / `zoo predict`, save -> load, bad inputs, bench."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tasks.detection import bench
from tasks.detection.drawing import DRAWN_PER_EVALUATION, GAP, MIN_SIDE, TITLE_FONT, TITLE_PAD
from tasks.detection.evaluation import DRAWINGS
from tasks.detection.task import DetectionTask
from tasks.engine.evaluation import EvalOptions

VIT = {"img_size": 64, "patch_size": 8, "dim": 32, "depth": 1, "heads": 2}
FCOS = {"dim": 32, "tower_depth": 1}
NO_AUGMENTATION = {"scale_range": [1.0, 1.0], "color_jitter": 0}
CLASSES = ["square", "bar"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    """Tiny models run faster on one thread, and far steadier on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _scene(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, list[dict]]:
    """A grey noisy image with 1-2 objects: a red square (class 1) or a blue horizontal bar (class 2)."""
    image = rng.integers(90, 130, (size, size, 3)).astype(np.uint8)
    annotations = []
    for _ in range(int(rng.integers(1, 3))):
        category = int(rng.integers(1, 3))
        w, h = (16, 16) if category == 1 else (28, 10)
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        if any(x < a["bbox"][0] + a["bbox"][2] and a["bbox"][0] < x + w and y < a["bbox"][1] + a["bbox"][3]
               and a["bbox"][1] < y + h for a in annotations):
            continue
        image[y:y + h, x:x + w] = (220, 40, 40) if category == 1 else (40, 60, 220)
        annotations.append({"category_id": category, "bbox": [x, y, w, h]})
    return image, annotations


def _coco(folder: Path, count: int, seed: int) -> Path:
    """Write ``count`` scenes as a COCO dataset in ``folder``; returns the annotation file."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        pixels, objects = _scene(rng)
        Image.fromarray(pixels).save(folder / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png"})
        annotations += [{"id": len(annotations) + k + 1, "image_id": image_id, **o} for k, o in enumerate(objects)]
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(run folder, COCO annotations, scene folder) of a short `zoo train detection` run on 32 scenes."""
    root = tmp_path_factory.mktemp("detection")
    annotations = _coco(root / "scenes", 32, seed=0)
    run = root / "run"
    torch.manual_seed(0)
    DetectionTask().command("train", [
        "--data", f"coco:{annotations}", "--val-data", f"coco:{annotations}", "--out", str(run),
        "--backbone", "vit_tiny", "--backbone-args", json.dumps(VIT), "--head", "fcos",
        "--head-args", json.dumps(FCOS), "--transform", json.dumps(NO_AUGMENTATION), "--batch-size", "8",
        "--lr", "5e-3", "--warmup-steps", "5", "--max-steps", "80", "--eval-every", "0", "--no-progress"])
    return run, annotations, root / "scenes"


@pytest.mark.slow
def test_training_lowers_the_loss_and_detects(trained: tuple[Path, Path, Path]) -> None:
    run, annotations, _ = trained
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first, last = np.mean([r["train_loss"] for r in rows[:5]]), np.mean([r["train_loss"] for r in rows[-5:]])
    assert last < 0.7 * first
    assert {"train_cls", "train_box", "train_ctr"} <= rows[0].keys()
    task = DetectionTask()
    model = zoo.load(run / "best")
    metrics = task.evaluate(model, task.datasets(f"coco:{annotations}", "all"), EvalOptions(batch_size=16))
    assert set(metrics) == {"map", "map_50", "map_75", "mar_100"}
    assert metrics["map_50"] > 0.05 and all(0.0 <= v <= 1.0 for v in metrics.values())


def test_eval_command_prints_one_json_line(trained: tuple[Path, Path, Path], capsys: pytest.CaptureFixture) -> None:
    run, annotations, _ = trained
    result = DetectionTask().command("eval", ["--checkpoint", str(run), "--data", f"coco:{annotations}"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == result and last["split"] == "all" and last["n"] == 32 and "map_50" in last


def test_eval_out_draws_ground_truth_beside_predictions(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run, annotations, _ = trained
    DetectionTask().command("eval", ["--checkpoint", str(run), "--data", f"coco:{annotations}",
                                     "--out", str(tmp_path)])
    drawn = sorted((tmp_path / DRAWINGS).glob("*.png"))
    assert len(drawn) == DRAWN_PER_EVALUATION and drawn[0].name.startswith("00-")
    factor = -(-MIN_SIDE // 64)
    with Image.open(drawn[0]) as picture:
        assert picture.size == (2 * 64 * factor + GAP, 64 * factor + TITLE_FONT + TITLE_PAD)   # under the titles
    assert len(list((run / DRAWINGS).glob("*.png"))) == DRAWN_PER_EVALUATION   # the run's final evaluation too


def test_predict_command_draws_pngs_and_prints_json(trained: tuple[Path, Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    run, _, scenes = trained
    inputs = [str(scenes / "images" / "1.png"), str(scenes / "images" / "2.png")]
    DetectionTask().command("predict", ["--checkpoint", str(run), *inputs, "--out", str(tmp_path / "drawn"),
                                        "--score-threshold", "0.1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["input"] for line in lines] == inputs
    for line in lines:
        assert (line["width"], line["height"]) == (64, 64)
        with Image.open(line["drawn"]) as drawn:   # enlarged by a whole factor to a readable size
            factor = -(-MIN_SIDE // 64)
            assert drawn.format == "PNG" and drawn.size == (64 * factor, 64 * factor)
        assert line["detections"], "no detection to check"
        scores = [found["score"] for found in line["detections"]]
        assert scores == sorted(scores, reverse=True)
        for found in line["detections"]:
            assert found["label"] in CLASSES and found["score"] >= 0.1
            assert 0 <= found["box"][0] <= found["box"][2] <= 64 and 0 <= found["box"][1] <= found["box"][3] <= 64


def _model(transform: dict | None = None, head: str = "fcos") -> zoo.ZooModel:
    args = argparse.Namespace(backbone="vit_tiny", head=head, backbone_args=VIT,
                              head_args=FCOS if head == "fcos" else {"dim": 32, "heads": 2, "depth": 1},
                              transform=transform)
    return DetectionTask().build_model(args, argparse.Namespace(classes=CLASSES)).eval()


@pytest.mark.parametrize("head", ["fcos", "detr"])
def test_save_load_gives_the_same_detections(tmp_path: Path, head: str) -> None:
    annotations = _coco(tmp_path / "scenes", 4, seed=1)
    task = DetectionTask()
    model = _model(head=head)
    collate = task.make_collate(model, train=False)
    batch = collate([task.datasets(f"coco:{annotations}", "all")[i] for i in range(4)])
    model.save(tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    assert loaded.preprocessing == model.preprocessing and loaded.head.labels == CLASSES
    with torch.no_grad():
        before = model.decode(model(batch), batch=batch, score_threshold=0.0)
        after = loaded.decode(loaded(batch), batch=batch, score_threshold=0.0)
    for a, b in zip(before, after):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["boxes"], b["boxes"])
        torch.testing.assert_close(a["scores"], b["scores"])


def test_predict_scales_boxes_back_to_the_file_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(transform={"size": 32})  # files are resized to a 32-pixel shorter side before the model
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((64, 96, 3), dtype=np.uint8)).save(path)
    fed_sizes = []

    def decode(outputs: dict, batch: dict, **options: object) -> list[dict]:
        fed_sizes.append(batch["image_sizes"][0].tolist())
        return [{"boxes": torch.tensor([[8.0, 4.0, 24.0, 16.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([1])}]

    monkeypatch.setattr(model, "decode", decode)
    [result] = DetectionTask().predict(model, [str(path)], out=str(tmp_path / "out"))
    assert fed_sizes == [[32, 48]]
    assert result["detections"] == [{"label": "bar", "score": 0.9, "box": [16.0, 8.0, 48.0, 32.0]}]
    assert (result["width"], result["height"]) == (96, 64) and Path(result["drawn"]).name == "wide.png"


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    model = _model()
    task = DetectionTask()
    with pytest.raises(FileNotFoundError, match="missing.png"):
        task.predict(model, [str(tmp_path / "missing.png")])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        task.predict(model, [str(broken)])
    with pytest.raises(ValueError, match="unknown detection transform option"):
        _model(transform={"sizes": 3})
    annotations = _coco(tmp_path / "other", 2, seed=2)
    data = json.loads(annotations.read_text())
    data["categories"][0]["name"] = "circle"
    annotations.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"\['circle'\] are not among the model's labels"):
        task.evaluate(model, task.datasets(f"coco:{annotations}", "all"), EvalOptions(batch_size=2))


def test_bench_pairs_ours_with_torchvision_fcos_at_the_same_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "BACKBONES", {"ViT": ("vit_tiny", True), "ResNet": ("timm/resnet10t", False)})  # fast
    pairs = bench.workloads(torch.device("cpu"), "fp32", quick=True)
    assert len(pairs) == 2 * 2 * 2  # modes x backbones x heads
    for ours, reference in pairs:
        assert ours.unit == reference.unit == "images" and ours.mode == reference.mode
        assert ours.config.split(";")[0] == reference.config.split(";")[0]
    ours, reference = pairs[0]  # training: fcos on ViT-S against torchvision
    ours.step()
    reference.step()
    inference = next(o for o, _ in pairs if o.mode == "inference" and "detr" in o.name)
    with torch.inference_mode():
        inference.step()
