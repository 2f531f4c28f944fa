"""`zoo export` and `zoo predict --runtime onnx` (issue 14) on tiny models of the four encoder tasks.

Each task's tiny model (random weights, the fixtures of test_task_contract) is exported to ONNX once;
the graph is run under onnxruntime at two sizes other than the traced one (logits within 1e-4 of the
PyTorch model) and its predictions through the task's export module equal ``task.predict``'s (labels,
transcripts, boxes). A torch.export round trip, the sidecar and the errors a user can act on are
checked beside.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zoo
from tasks.asr.audio import collate_audio
from tasks.engine.export import SIDECAR, Exported, Graph, Traced, export_failure, predict_exported, task_module
from tasks.engine.export_command import export
from tasks.engine.task import Task
from tasks.sentiment.task import encode
from tests.test_task_contract import FIXTURES, _train_args
from zoo.cli import main
from zoo.errors import ZooError

pytestmark = pytest.mark.usefixtures("one_thread")
ENCODERS = ("sentiment", "image_classification", "asr", "detection")
TOLERANCE = 1e-4
_BUILT: dict[str, tuple[Any, list[Any], Path, Path]] = {}


def _model(name: str, folder: Path) -> tuple[zoo.ZooModel, list[Any]]:
    """The task's tiny model on its fixture (random weights) and two inputs to predict."""
    task, fixture = zoo.get_task(name), FIXTURES[name]
    spec, inputs = fixture.write(folder)
    torch.manual_seed(0)
    model = task.build_model(_train_args(task, ["--data", spec, *fixture.argv]), task.datasets(spec, "train"))
    if name == "detection":   # spread the scores: near-equal random scores would make the ranking a coin toss
        with torch.no_grad():
            for conv in (model.head.cls_logits, model.head.centerness):
                conv.weight.normal_(0, 0.1)
    return model.eval(), inputs


def _built(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[zoo.ZooModel, list[Any], Path, Path]:
    """(model, inputs, model folder, ONNX export folder), made once per task for this module."""
    if name not in _BUILT:
        folder = tmp_path_factory.mktemp(name)
        model, inputs = _model(name, folder)
        model.save(folder / "model")
        _BUILT[name] = model, inputs, folder / "model", export(zoo.get_task(name), str(folder / "model"), "onnx",
                                                               folder / "onnx", optimize=False)
    return _BUILT[name]


def _two_sizes(name: str, model: zoo.ZooModel) -> list[dict[str, torch.Tensor]]:
    """Graph inputs at two sizes other than the traced one (batch and length, or image size for detection)."""
    if name == "sentiment":
        batches = [encode(model, ["great and superb and fine and good and nice", "dull", "ok then"]),
                   encode(model, ["superb"])]
        return [{"inputs": ids, "mask": mask} for ids, mask in batches]
    if name == "image_classification":
        size = model.preprocessing["transform"]["image_size"]
        return [{"inputs": torch.randn(3, 3, size, size)}, {"inputs": torch.randn(1, 3, size, size)}]
    if name == "asr":
        clips = [[0.3, 0.7, 0.45], [0.9]]
        batches = [collate_audio([{"audio": torch.randn(int(s * 16000)) * 0.1, "text": ""} for s in seconds])
                   for seconds in clips]
        return [{"inputs": b["inputs"], "mask": b["mask"]} for b in batches]
    return [{"inputs": torch.randn(1, 3, 64, 64)}, {"inputs": torch.randn(3, 3, 80, 48)}]


@pytest.mark.parametrize("name", ENCODERS)
def test_onnx_graph_matches_pytorch_at_two_other_sizes(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    model, _, _, folder = _built(name, tmp_path_factory)
    exported = Exported(folder)
    traced = task_module(zoo.get_task(name)).graph(model)
    for inputs in _two_sizes(name, model):
        assert inputs["inputs"].shape != traced.inputs["inputs"].shape
        with torch.no_grad():
            expected = traced.module(**inputs)
        got = exported.run(**{k: v.numpy() for k, v in inputs.items()})
        assert set(got) == set(expected)
        for key, value in expected.items():
            assert got[key].shape == tuple(value.shape), (name, key)
            difference = float(np.abs(got[key].astype(np.float64) - value.numpy()).max())
            print(f"{name} {key} {tuple(value.shape)}: max abs difference {difference:.2e}")
            assert difference <= TOLERANCE, (name, key, difference)


def _same(name: str, ours: list[Any], theirs: list[Any]) -> None:
    """Identical decisions; probabilities, scores and boxes within rounding of fp32 noise."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if name == "asr":
            assert a == b
        elif name == "detection":
            assert (a["width"], a["height"]) == (b["width"], b["height"])
            assert [d["label"] for d in a["detections"]] == [d["label"] for d in b["detections"]]
            for p, q in zip(a["detections"], b["detections"]):
                assert p["score"] == pytest.approx(q["score"], abs=1e-4)
                assert p["box"] == pytest.approx(q["box"], abs=0.11)   # rounded to 0.1 pixel
        else:
            assert a["label"] == b["label"]
            assert a["probability"] == pytest.approx(b["probability"], abs=TOLERANCE)
            if name == "image_classification":
                assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]


PREDICT_OPTIONS = {"detection": {"score_threshold": 0.05, "max_detections": 10}}


@pytest.mark.parametrize("name", ENCODERS)
def test_onnx_predictions_equal_the_pytorch_predictions(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    model, inputs, _, folder = _built(name, tmp_path_factory)
    task = zoo.get_task(name)
    options = PREDICT_OPTIONS.get(name, {})
    expected = task.predict(model, inputs, **options)
    got = predict_exported(task, str(folder), inputs, **options)
    if name == "detection":
        assert any(p["detections"] for p in expected)    # something to compare
    _same(name, got, expected)


def test_sidecar_describes_the_graph(tmp_path_factory: pytest.TempPathFactory) -> None:
    model, _, _, folder = _built("sentiment", tmp_path_factory)
    sidecar = json.loads((folder / SIDECAR).read_text())
    assert (sidecar["task"], sidecar["format"], sidecar["file"]) == ("sentiment", "onnx", "model.onnx")
    assert sidecar["zoo_version"] == zoo.__version__ and sidecar["opset"] >= 18
    assert [i["name"] for i in sidecar["inputs"]] == ["inputs", "mask"]
    assert sidecar["inputs"][0]["shape"] == ["batch", "tokens"] and sidecar["outputs"][0]["shape"] == ["batch", 2]
    assert sidecar["dynamic_axes"]["mask"] == {"0": "batch", "1": "tokens"}
    assert sidecar["preprocessing"] == model.preprocessing and sidecar["labels"] == model.head.labels
    assert (folder / sidecar["tokenizer"]).is_file() and (folder / "model.onnx").is_file()


def test_cli_predict_runtime_onnx_prints_what_torch_prints(tmp_path_factory: pytest.TempPathFactory,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, inputs, checkpoint, folder = _built("sentiment", tmp_path_factory)
    outputs = []
    for runtime, path in (("torch", checkpoint), ("onnx", folder)):
        main(["predict", "sentiment", "--checkpoint", str(path), "--runtime", runtime, *inputs])
        outputs.append(capsys.readouterr().out.splitlines())
    assert [line.split("\t")[0] for line in outputs[0]] == [line.split("\t")[0] for line in outputs[1]]
    with pytest.raises(ZooError, match="is a sentiment export; use `zoo predict sentiment`"):
        predict_exported(zoo.get_task("image_classification"), str(folder), ["x.png"])
    with pytest.raises(ZooError, match=f"no {SIDECAR}"):
        predict_exported(zoo.get_task("sentiment"), str(checkpoint), inputs)


def test_torch_export_round_trip_from_the_cli(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    model, _, checkpoint, _ = _built("sentiment", tmp_path_factory)
    out = tmp_path / "pt2"
    main(["export", "sentiment", "--checkpoint", str(checkpoint), "--format", "torch-export", "--out", str(out)])
    assert "exported" in capsys.readouterr().out
    exported = Exported(out)
    assert exported.sidecar["format"] == "torch-export" and (out / "model.pt2").is_file()
    traced = task_module(zoo.get_task("sentiment")).graph(model)
    for inputs in _two_sizes("sentiment", model):
        with torch.no_grad():
            expected = traced.module(**inputs)["logits"].numpy()
        assert np.abs(exported.run(**{k: v.numpy() for k, v in inputs.items()})["logits"] - expected).max() <= TOLERANCE
    with pytest.raises(ZooError, match="holds a torch-export program, not ONNX"):
        predict_exported(zoo.get_task("sentiment"), str(out), ["fine"])


# ---- errors ------------------------------------------------------------------------------------------------

def test_a_checkpoint_that_fails_to_load_is_reported_before_tracing(tmp_path_factory: pytest.TempPathFactory,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, checkpoint, _ = _built("sentiment", tmp_path_factory)
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in checkpoint.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])     # truncated

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("traced a model that does not load")

    monkeypatch.setattr(torch.onnx, "export", never)
    with pytest.raises(ZooError, match=r"^--checkpoint .*broken: the model does not load \(.*\); nothing was exported"):
        export(zoo.get_task("sentiment"), str(broken), "onnx", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_format_and_task_and_a_task_without_export_are_refused(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ZooError, match="--format tflite: unknown format; use one of onnx, torch-export"):
        export(zoo.get_task("sentiment"), "run", "tflite", tmp_path / "out")
    with pytest.raises(SystemExit):
        main(["export", "sentiment", "--checkpoint", "run", "--format", "tflite", "--out", str(tmp_path)])
    assert "invalid choice 'tflite'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "sentiment_analysis", "--checkpoint", "run", "--out", str(tmp_path)])
    assert "unknown task" in capsys.readouterr().err

    class Unexported(Task):
        name = "unexported"

    with pytest.raises(ZooError, match=r"this task has no export \(tasks that export: asr, detection, "
                                       r"image_classification, sentiment, text_generation, translation\)"):
        task_module(Unexported())


def test_an_operation_onnx_lacks_names_the_parts_and_the_way_out(tmp_path_factory: pytest.TempPathFactory,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, checkpoint, _ = _built("sentiment", tmp_path_factory)
    module = task_module(zoo.get_task("sentiment"))
    plain = module.graph

    def eigen_graph(model: zoo.ZooModel) -> Graph:     # an operation without an ONNX translation
        return Graph(Traced(model, lambda out: {"logits": torch.linalg.eigvals(out["logits"][:, :1, None]).real}),
                     plain(model).inputs, {})

    monkeypatch.setattr(module, "graph", eigen_graph)
    with pytest.raises(ZooError) as error:
        export(zoo.get_task("sentiment"), str(checkpoint), "onnx", tmp_path / "out", optimize=False)
    message = str(error.value)
    assert "\n" not in message
    for part in ("backbone 'text_encoder_tiny'", "head 'classification'", "aten.linalg_eig", "--format torch-export"):
        assert part in message, message


def test_data_dependent_python_is_named_with_its_line(tmp_path_factory: pytest.TempPathFactory) -> None:
    model, _, _, _ = _built("sentiment", tmp_path_factory)

    class Branchy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:     # a branch on tensor values: torch.export cannot trace it
                return x * 2
            return x

    with pytest.raises(Exception) as error:
        torch.export.export(Branchy(), (torch.ones(2, 3),))
    message = export_failure(model, "torch-export", error.value)
    assert "test_export.py:" in message and "`if x.sum() > 0:" in message, message
    assert "backbone 'text_encoder_tiny'" in message and "--runtime torch" in message


def _greedy_nms(boxes: list[list[float]], scores: list[float], limit: float) -> list[int]:
    """Brute-force greedy NMS: best score first, dropping every box whose IoU with a kept one passes ``limit``."""
    def iou(a: list[float], b: list[float]) -> float:
        inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(iou(boxes[i], boxes[k]) <= limit for k in kept):
            kept.append(i)
    return kept


def test_exported_detection_decode_keeps_what_greedy_class_agnostic_nms_keeps() -> None:
    from tasks.detection.export import decode

    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 60, size=(40, 2, 2)).astype(np.float32)
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1) + 4], axis=1)  # (40, 4) xyxy inside 64x64
    scores = rng.permutation(np.linspace(0.01, 0.99, 80, dtype=np.float32)).reshape(40, 2)  # (N, C), no ties
    kept_boxes, kept_scores, labels = decode(scores, boxes, (64, 64), score_threshold=0.3, max_detections=100,
                                             candidates=1000, nms_iou=0.5)
    top = [(float(scores[i, c]), i, c) for i in range(40) for c in range(2) if scores[i, c] > 0.3]
    order = _greedy_nms([boxes[i].tolist() for _, i, _ in top], [s for s, _, _ in top], 0.5)
    assert 3 < len(order) < len(top)    # some boxes went, some stayed
    assert kept_scores.tolist() == [top[k][0] for k in order] and labels.tolist() == [top[k][2] for k in order]
    assert kept_boxes.tolist() == [boxes[top[k][1]].tolist() for k in order]
