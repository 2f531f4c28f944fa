"""`zoo quantize` and :mod:`zoo.quantized` (issue 14, int8) on tiny models the tests build.

PyTorch int8: the int8 layers against a reference computed by hand, the checkpoint's tensors and size,
the ``zoo.load`` round trip (bit-exact with the quantized model in memory; same labels as fp32, logits
within :data:`LOGIT_TOLERANCE`), ``zoo eval``/``zoo predict`` on it. ONNX int8 (dynamic and static,
onnxruntime): int8 weights in the graph and the fp32 decisions on the calibration set's own inputs (a
static scale measured there clips inputs unlike it). Bad input is refused in one line before any work.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors import safe_open

import zoo
from tasks.engine.export import Exported, predict_exported
from tasks.engine.export_command import export
from tasks.engine.quantize_command import quantize_checkpoint
from tasks.sentiment.task import encode
from tests.test_task_contract import FIXTURES, tiny_model
from zoo.cli import main
from zoo.errors import ZooError
from zoo.quantized import QMAX, Int8Embedding, Int8Linear, _kernel_fits, int8_matmul, quantize_rows

pytestmark = pytest.mark.usefixtures("one_thread")
LOGIT_TOLERANCE = 0.05      # largest |int8 - fp32| logit of the tiny models (their logits reach ~1)
PROBABILITY_TOLERANCE = 0.02        # largest |int8 - fp32| probability of the predicted label
_BUILT: dict[str, tuple[zoo.ZooModel, str, Path]] = {}


def _built(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[zoo.ZooModel, str, Path]:
    """(fp32 model, data SPEC, its saved folder) of the task's tiny fixture, once per module."""
    if name not in _BUILT:
        folder = tmp_path_factory.mktemp(name)
        model, spec, _ = tiny_model(name, folder)
        model.eval().save(folder / "fp32")
        _BUILT[name] = model, spec, folder / "fp32"
    return _BUILT[name]


def _inputs(name: str, spec: str) -> list[Any]:
    """What ``task.predict`` takes, for every sample of the fixture (texts or image paths)."""
    samples = zoo.get_task(name).datasets(spec, "all")
    return [sample["text"] if name == "sentiment" else sample["image"] for sample in samples]


def _same_decisions(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Probabilities within :data:`PROBABILITY_TOLERANCE`, hence the same label wherever fp32's best two
    classes are further apart than twice that (a random tiny model has near-ties; most rows are not)."""
    decided = 0
    for ours, theirs in zip(got, expected, strict=True):
        assert abs(ours["probability"] - theirs["probability"]) < PROBABILITY_TOLERANCE
        best, second = sorted(_probabilities(theirs), reverse=True)[:2]
        if best - second > 2 * PROBABILITY_TOLERANCE:
            assert ours["label"] == theirs["label"]
            decided += 1
    assert decided >= len(expected) // 3


def _probabilities(prediction: dict[str, Any]) -> list[float]:
    if "probabilities" in prediction:       # sentiment
        return list(prediction["probabilities"].values())
    return [entry["probability"] for entry in prediction["top"]]     # image classification


def _logits(model: zoo.ZooModel, name: str, spec: str) -> torch.Tensor:
    """Logits (N, C) of the whole fixture through the task's evaluation collate."""
    task = zoo.get_task(name)
    dataset = task.datasets(spec, "all")
    with torch.no_grad():
        return model(task.make_collate(model, train=False)([dataset[i] for i in range(len(dataset))]))["logits"]


# ---- the int8 layers ---------------------------------------------------------------------------------------

def test_int8_linear_equals_the_integer_product_computed_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 10)
    x = torch.randn(2, 3, 24)
    module = Int8Linear.from_float(linear)
    weights, scales = quantize_rows(linear.weight)
    assert weights.dtype == torch.int8 and int(weights.abs().max()) == QMAX
    rows = x.reshape(6, 24)
    step = rows.abs().amax(dim=-1, keepdim=True) / QMAX                     # per token
    values = torch.round(rows / step).to(torch.int64)
    expected = (values @ weights.to(torch.int64).t()).double() * step.double() * scales.double() + linear.bias.double()
    got = module(x)
    assert got.shape == (2, 3, 10)
    assert torch.allclose(got.reshape(6, 10).double(), expected, atol=1e-5)
    assert (got - linear(x)).abs().max() < 0.05              # near the float layer
    monkeypatch.setattr("zoo.quantized._kernel_fits", lambda a, b: False)   # where torch._int_mm does not apply
    assert torch.equal(module(x), got)
    static = Int8Linear.from_float(linear, input_scale=torch.tensor(0.5 / QMAX))    # inputs beyond 0.5 clip
    assert torch.allclose(static(torch.full((1, 24), 2.0)), static(torch.full((1, 24), 0.5)))
    a, b = torch.randint(-127, 128, (5, 300), dtype=torch.int8), torch.randint(-127, 128, (300, 7), dtype=torch.int8)
    assert torch.equal(int8_matmul(a, b), (a.long() @ b.long()).int())


def test_the_int8_kernel_is_used_where_its_shapes_fit() -> None:
    def on(device: str, rows: int, cols: int) -> SimpleNamespace:     # what _kernel_fits reads of a tensor
        return SimpleNamespace(device=torch.device(device), shape=(rows, cols))

    assert _kernel_fits(on("cpu", 1, 17), on("cpu", 17, 5))
    assert _kernel_fits(on("cuda", 32, 64), on("cuda", 64, 16))
    assert not _kernel_fits(on("cuda", 16, 64), on("cuda", 64, 16))     # CUDA wants more than 16 rows
    assert not _kernel_fits(on("cuda", 32, 60), on("cuda", 60, 16))     # and K, N multiples of 8
    assert not _kernel_fits(on("cuda", 32, 64), on("cuda", 64, 12))
    assert not _kernel_fits(on("meta", 32, 64), on("meta", 64, 16))


def test_int8_embedding_and_its_tied_projection_share_one_table(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create_model("text_decoder_tiny", "lm").eval()
    ids = torch.randint(0, 100, (2, 7))
    with torch.no_grad():
        expected = model(ids)["logits"]
        spec = zoo.quantize(model)
        got = model(ids)["logits"]
    assert spec.tied == {"head.proj": "backbone.embed"}
    assert isinstance(model.backbone.embed, Int8Embedding) and isinstance(model.head.proj, Int8Linear)
    assert model.head.proj.weight_int8 is model.backbone.embed.weight_int8
    assert torch.equal(model.backbone.embed.weight[:100], model.backbone.embed(torch.arange(100)))
    assert (got - expected).abs().max() < LOGIT_TOLERANCE
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    model.save(tmp_path / "int8")
    with safe_open(str(tmp_path / "int8" / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert len({"backbone.embed.weight_int8", "head.proj.weight_int8"} & names) == 1      # saved once
    loaded = zoo.load(tmp_path / "int8")
    assert loaded.head.proj.weight_int8 is loaded.backbone.embed.weight_int8
    with torch.no_grad():
        assert torch.equal(loaded(ids)["logits"], got)
        assert len(loaded.generate(ids[:, :3], max_new_tokens=2)[0]) == 2


# ---- PyTorch int8 checkpoints ------------------------------------------------------------------------------

def test_the_checkpoint_stores_int8_tensors_and_is_over_2x_smaller(tmp_path_factory: pytest.TempPathFactory,
                                                                   tmp_path: Path) -> None:
    _, _, fp32 = _built("sentiment", tmp_path_factory)
    out = quantize_checkpoint(zoo.get_task("sentiment"), str(fp32), "dynamic", tmp_path / "int8")
    config = json.loads((out / "config.json").read_text())
    spec = config["quantization"]
    assert spec["method"] == "dynamic" and "backbone.embed" in spec["embedding"] and "head.fc" in spec["linear"]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    for module in spec["linear"] + spec["embedding"]:
        assert tensors[f"{module}.weight_int8"].dtype == torch.int8
        assert tensors[f"{module}.weight_scale"].dtype == torch.float32
        assert f"{module}.weight" not in tensors
    ratio = (out / "model.safetensors").stat().st_size / (fp32 / "model.safetensors").stat().st_size
    print(f"int8 / fp32 file size: {ratio:.2f}")
    assert ratio < 0.5


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_the_loaded_int8_model_predicts_the_fp32_labels(method: str, tmp_path_factory: pytest.TempPathFactory,
                                                       tmp_path: Path) -> None:
    model, spec, fp32 = _built("sentiment", tmp_path_factory)
    task = zoo.get_task("sentiment")
    calibration = spec if method == "static" else None
    out = quantize_checkpoint(task, str(fp32), method, tmp_path / "int8", calibration=calibration)
    loaded = zoo.load(out)
    assert loaded.quantization.method == method and isinstance(loaded.backbone.stack.blocks[0].mlp.fc1, Int8Linear)
    assert (loaded.head.fc.input_scale is None) == (method == "dynamic")
    expected, got = _logits(model, "sentiment", spec), _logits(loaded, "sentiment", spec)
    print(f"{method}: max |int8 - fp32| logit {float((got - expected).abs().max()):.4f}")
    assert (got - expected).abs().max() < LOGIT_TOLERANCE
    inputs = _inputs("sentiment", spec)
    _same_decisions(task.predict(loaded, inputs), task.predict(model, inputs))


@pytest.mark.parametrize("method", ["dynamic", "static"])
@pytest.mark.parametrize("name", zoo.list_tasks())
def test_every_task_predicts_from_an_int8_checkpoint(name: str, method: str, tmp_path: Path) -> None:
    task = zoo.get_task(name)
    model, spec, inputs = tiny_model(name, tmp_path)
    model.eval().save(tmp_path / "fp32")
    calibration = spec if method == "static" else None     # calibrated through the task's own collate
    int8 = quantize_checkpoint(task, str(tmp_path / "fp32"), method, tmp_path / "int8", calibration=calibration)
    loaded = zoo.load(int8)
    assert loaded.quantization.method == method
    assert any(isinstance(m, Int8Linear) for m in loaded.modules())
    assert not any(isinstance(m, (torch.nn.Linear, torch.nn.Embedding)) for m in loaded.modules())
    options = FIXTURES[name].predict_options
    expected, got = task.predict(model, inputs, **options), task.predict(loaded, inputs, **options)
    assert len(got) == len(expected) and [type(p) for p in got] == [type(p) for p in expected]


def test_zoo_eval_and_predict_read_an_int8_checkpoint(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, spec, fp32 = _built("sentiment", tmp_path_factory)
    out = tmp_path / "int8"
    main(["quantize", "sentiment", "--checkpoint", str(fp32), "--method", "static", "--calibration", spec,
          "--calibration-batches", "2", "--out", str(out)])
    assert "(static int8, torch)" in capsys.readouterr().out
    lines = []
    for folder in (fp32, out):
        main(["eval", "sentiment", "--checkpoint", str(folder), "--data", spec, "--no-progress"])
        lines.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert lines[1]["n"] == lines[0]["n"] and abs(lines[1]["accuracy"] - lines[0]["accuracy"]) <= 1 / lines[0]["n"]
    main(["predict", "sentiment", "--checkpoint", str(out), "--json", "fine and good"])
    assert json.loads(capsys.readouterr().out)["prediction"]["label"] in ("negative", "positive")


def test_an_int8_checkpoint_exports_with_torch_export_and_onnx_is_refused_before_tracing(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, spec, fp32 = _built("sentiment", tmp_path_factory)
    task = zoo.get_task("sentiment")
    int8 = quantize_checkpoint(task, str(fp32), "dynamic", tmp_path / "int8")
    folder = export(task, str(int8), "torch-export", tmp_path / "pt2")
    ids, mask = encode(model, _inputs("sentiment", spec)[:3])
    with torch.no_grad():
        expected = zoo.load(int8)(ids, mask)["logits"].numpy()
    assert np.abs(Exported(folder).run(inputs=ids.numpy(), mask=mask.numpy())["logits"] - expected).max() <= 1e-5

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("traced an int8 model to ONNX")

    monkeypatch.setattr(torch.onnx, "export", never)
    with pytest.raises(ZooError, match=r"is an int8 zoo model.*aten\._int_mm.*--format torch-export.*"
                                       r"`zoo quantize sentiment --format onnx`"):
        export(task, str(int8), "onnx", tmp_path / "onnx")


# ---- ONNX int8 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "method"), [("sentiment", "dynamic"), ("sentiment", "static"),
                                              ("image_classification", "static")])
def test_onnx_int8_runs_under_onnxruntime_with_the_fp32_decisions(name: str, method: str, tmp_path: Path,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    model, spec, fp32 = _built(name, tmp_path_factory)
    task = zoo.get_task(name)
    out = quantize_checkpoint(task, str(fp32), method, tmp_path / "onnx", "onnx",
                              calibration=spec if method == "static" else None)
    sidecar = Exported(out).sidecar
    assert sidecar["quantization"]["method"] == method and sidecar["task"] == name
    graph = onnx.load(str(out / sidecar["file"]))
    operations = {node.op_type for node in graph.graph.node}
    assert ("MatMulInteger" if method == "dynamic" else "QuantizeLinear") in operations
    assert any(numpy_helper.to_array(t).dtype == np.int8 for t in graph.graph.initializer)
    inputs = _inputs(name, spec)
    _same_decisions(predict_exported(task, str(out), inputs), task.predict(model, inputs))


def test_onnx_int8_leaves_the_speech_front_end_float(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    model, spec, fp32 = _built("asr", tmp_path_factory)
    task = zoo.get_task("asr")
    out = quantize_checkpoint(task, str(fp32), "dynamic", tmp_path / "onnx", "onnx")
    weights = {t.name: numpy_helper.to_array(t).dtype for t in onnx.load(str(out / "model.onnx")).graph.initializer}
    mel = "model.backbone.frontend.mel.mel_scale.fb"      # a buffer of the model, no trained weight
    assert weights[mel] == np.float32 and f"{mel}_quantized" not in weights
    assert any(dtype == np.int8 for dtype in weights.values())
    inputs = [sample["path"] for sample in task.datasets(spec, "all")]
    assert predict_exported(task, str(out), inputs) == task.predict(model, inputs)


# ---- errors ------------------------------------------------------------------------------------------------

def test_bad_input_is_refused_in_one_line_before_any_work(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, spec, fp32 = _built("sentiment", tmp_path_factory)
    task = zoo.get_task("sentiment")

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loaded a model for a command that was refused")

    with monkeypatch.context() as patch:
        patch.setattr(zoo, "load", never)
        with pytest.raises(ZooError, match="--method int4: unknown method; use one of dynamic, static"):
            quantize_checkpoint(task, str(fp32), "int4", tmp_path / "a")
        with pytest.raises(ZooError, match="--method static needs --calibration SPEC"):
            quantize_checkpoint(task, str(fp32), "static", tmp_path / "a")
        with pytest.raises(ZooError, match="--calibration applies to --method static only"):
            quantize_checkpoint(task, str(fp32), "dynamic", tmp_path / "a", calibration=spec)
    for argv, message in ((["--method", "int4"], "invalid choice 'int4'"),
                          (["--method", "static"], "--method static needs --calibration SPEC")):
        with pytest.raises(SystemExit):
            main(["quantize", "sentiment", "--checkpoint", str(fp32), "--out", str(tmp_path / "b"), *argv])
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    broken = tmp_path / "broken"
    broken.mkdir()
    for item in fp32.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "model.safetensors").write_bytes((fp32 / "model.safetensors").read_bytes()[:100])    # truncated
    with pytest.raises(ZooError, match=r"^--checkpoint .*broken: the model does not load \(.*\); nothing was quantiz"):
        quantize_checkpoint(task, str(broken), "dynamic", tmp_path / "c")
    int8 = quantize_checkpoint(task, str(fp32), "dynamic", tmp_path / "int8")
    with pytest.raises(ZooError, match="is int8 already; quantize the float checkpoint"):
        quantize_checkpoint(task, str(int8), "dynamic", tmp_path / "d")


def test_a_tampered_quantization_field_names_the_file_and_field(tmp_path_factory: pytest.TempPathFactory,
                                                                tmp_path: Path) -> None:
    _, _, fp32 = _built("sentiment", tmp_path_factory)
    out = quantize_checkpoint(zoo.get_task("sentiment"), str(fp32), "dynamic", tmp_path / "int8")
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    for field, value, message in (("method", "int4", "field 'method' is 'int4'"),
                                  ("linear", ["backbone.nowhere"], "'backbone.nowhere' is no Linear of this model"),
                                  ("embedding", ["head.fc"], "'head.fc' is no embedding of this model")):
        broken = {**config, "quantization": {**config["quantization"], field: value}}
        config_path.write_text(json.dumps(broken))
        with pytest.raises(ZooError, match=f"config.json: field 'quantization'.*{message}"):
            zoo.load(out)
