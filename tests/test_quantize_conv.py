"""Int8 convolutions (:class:`zoo.quantized.Int8Conv2d`, issue 14): against the integer convolution computed by
hand in float64, both ways of summing (float32 where exact, float64 past its bound), one input scale per sample
(a sample's output does not depend on its batch), the checkpoint of a convolutional detector (int8 tensors,
``zoo.load`` bit-exact) and an int8 checkpoint written before convolutions were quantized."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn
from torch.nn import functional as F

import zoo
from tasks.engine.quantize_command import quantize_checkpoint
from tests.test_detection_task import _coco
from tests.test_task_contract import _train_args, tiny_model
from zoo.errors import ZooError
from zoo.quantized import QMAX, Int8Conv2d, quantize

pytestmark = pytest.mark.usefixtures("one_thread")


def _by_hand(conv: nn.Conv2d, x: torch.Tensor, input_scale: torch.Tensor | None = None) -> torch.Tensor:
    """The int8 convolution in float64: weights per output channel, inputs per sample (or ``input_scale``)."""
    w = conv.weight.detach().double()
    w_scale = w.flatten(1).abs().amax(dim=1) / QMAX                                     # (O,)
    w_int = torch.round(w / w_scale[:, None, None, None]).clamp(-QMAX, QMAX)
    x_scale = (x.double().abs().amax(dim=(1, 2, 3), keepdim=True) / QMAX if input_scale is None
               else input_scale.double())                                               # (B, 1, 1, 1) or ()
    x_int = torch.round(x.double() / x_scale).clamp(-QMAX, QMAX)
    sums = torch.nn.functional.conv2d(x_int, w_int, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return sums * x_scale * w_scale[:, None, None] + conv.bias.double()[:, None, None]


@pytest.mark.parametrize("groups", [1, 4])
def test_int8_conv_equals_the_integer_convolution_computed_by_hand(groups: int) -> None:
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=groups)
    x = torch.randn(3, 8, 11, 9)
    module = Int8Conv2d.from_float(conv)
    assert module.weight_int8.dtype == torch.int8 and module.weight_scale.shape == (12,)
    assert module.exact_in_float32()
    with torch.no_grad():
        got, expected = module(x), _by_hand(conv, x)
        assert (got.double() - expected).abs().max() < 1e-5
        assert (got - conv(x)).abs().max() < 0.05 * conv(x).abs().max()          # close to the float layer
        static = Int8Conv2d.from_float(conv, torch.tensor(0.02))
        assert (static(x).double() - _by_hand(conv, x, torch.tensor(0.02))).abs().max() < 1e-5


def test_past_the_float32_bound_the_sums_are_taken_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    conv = nn.Conv2d(4096, 2, 1)           # 127 * sum |w_int8| over 4096 inputs passes 2**24
    with torch.no_grad():
        conv.weight.fill_(0.5)
    x = torch.rand(1, 4096, 2, 2) + 1.0
    summed_in: list[torch.dtype] = []      # the dtype of every convolution the module runs
    conv2d = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda inputs, *rest: summed_in.append(inputs.dtype) or conv2d(inputs, *rest))
    module = Int8Conv2d(conv, static=False)          # empty, as zoo.load builds it: zeros are exact
    assert module.exact_in_float32()
    with torch.no_grad():
        module(x)
        module.load_state_dict(Int8Conv2d.from_float(conv).state_dict())     # the bound follows the loaded weights
        assert not module.exact_in_float32()
        exact = module(x)
    # whether float32 sums past the bound round differently depends on the CPU's kernel (a blocked one may
    # round only once), so the test checks which sums are taken, and that they equal the sums by hand
    assert summed_in == [torch.float32, torch.float64]
    assert (exact.double() - _by_hand(conv, x)).abs().max() / exact.abs().max() < 1e-6


def test_a_samples_output_does_not_depend_on_its_batch() -> None:
    module = Int8Conv2d.from_float(nn.Conv2d(3, 5, 3, padding=1))
    x = torch.randn(4, 3, 8, 8)
    x[1] *= 50                              # a loud sample: with one scale for the batch it would flatten the others
    with torch.no_grad():
        assert torch.equal(module(x)[2:3], module(x[2:3]))


def test_a_convolutional_detector_saves_int8_convolutions_and_loads_bit_exact(tmp_path: Path) -> None:
    task, spec = zoo.get_task("detection"), f"coco:{_coco(tmp_path / 'scenes', 2, seed=0)}"
    args = _train_args(task, ["--data", spec, "--backbone", "timm/mobilenetv3_small_050", "--head-args", '{"dim": 16}'])
    model = task.build_model(args, task.datasets(spec, "train"))
    model.eval().save(tmp_path / "fp32")
    out = quantize_checkpoint(task, str(tmp_path / "fp32"), "dynamic", tmp_path / "int8")
    config = json.loads((out / "config.json").read_text())["quantization"]
    assert config["linear"] == [] and "head.cls_logits" in config["conv"] and len(config["conv"]) > 40
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.get_tensor("head.cls_logits.weight_int8").dtype == torch.int8
        assert "head.cls_logits.weight" not in f.keys()
    assert (out / "model.safetensors").stat().st_size < 0.5 * (tmp_path / "fp32" / "model.safetensors").stat().st_size
    loaded, again = zoo.load(out).eval(), zoo.load(tmp_path / "fp32").eval()
    quantize(again)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs, fp32 = loaded(images), again(images), model(images)
    assert torch.equal(ours["logits"], theirs["logits"]) and torch.equal(ours["distances"], theirs["distances"])
    assert (ours["logits"] - fp32["logits"]).abs().max() < 0.1 * fp32["logits"].abs().max()


def test_an_int8_checkpoint_without_convolutions_in_its_config_still_loads(tmp_path: Path) -> None:
    model, _, _ = tiny_model("sentiment", tmp_path)
    model.eval().save(tmp_path / "fp32")
    out = quantize_checkpoint(zoo.get_task("sentiment"), str(tmp_path / "fp32"), "dynamic", tmp_path / "int8")
    path = out / "config.json"
    config = json.loads(path.read_text())
    assert config["quantization"].pop("conv") == []
    path.write_text(json.dumps(config))
    assert zoo.load(out).quantization.conv == ()
    config["quantization"]["conv"] = ["backbone.nowhere"]
    path.write_text(json.dumps(config))
    with pytest.raises(ZooError, match=r"config.json: field 'quantization'.*'backbone.nowhere' is no Conv2d"):
        zoo.load(out)
