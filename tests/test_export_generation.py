"""`zoo export` of the generating tasks (issue 14): text_generation (prefill + decoder-step graphs) and
translation (encoder + decoder-step graphs) under onnxruntime, driven by the numpy loops of
tasks.engine.onnx_decode.

Each task's tiny model (the fixtures of test_task_contract with two decoder layers, weights spread so decoding is not one token
repeated) is exported to ONNX once. Every graph is run at two sizes other than the traced one (batch,
length, cache capacity; outputs within 1e-4 of the PyTorch module), and the texts of greedy and beam-2
decoding equal ``task.predict``'s.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import zoo
from tasks.engine.export import SIDECAR, Exported, Graph, predict_exported, task_module
from tasks.engine.export_command import export
from tasks.engine.onnx_decode import beam_search, greedy, log_softmax
from tests.test_export import _same
from tests.test_task_contract import FIXTURES, _train_args
from zoo.cli import main
from zoo.errors import ZooError

pytestmark = pytest.mark.usefixtures("one_thread")
GENERATORS = ("text_generation", "translation")
PARTS = {"text_generation": ("prefill", "decoder"), "translation": ("encoder", "decoder")}
TOLERANCE = 1e-4
DEEPER = {"text_generation": ["--backbone-args", json.dumps({"dim": 32, "depth": 2, "heads": 2})],   # layers stack
          "translation": ["--head-args", json.dumps({"depth": 2, "heads": 2})]}
LEARNED = ["--backbone-args", json.dumps({"dim": 32, "depth": 2, "heads": 2, "position": "learned", "max_len": 48})]
_BUILT: dict[tuple[str, ...], tuple[zoo.ZooModel, list[str], Path, Path]] = {}


def _built(name: str, tmp_path_factory: pytest.TempPathFactory,
           argv: list[str] | None = None) -> tuple[zoo.ZooModel, list[str], Path, Path]:
    """(model, prompts or sources, model folder, ONNX export folder), made once per task and ``argv``
    (default: two decoder layers) for this module."""
    argv = DEEPER[name] if argv is None else argv
    key = (name, *argv)
    if key not in _BUILT:
        folder = tmp_path_factory.mktemp(name)
        task, fixture = zoo.get_task(name), FIXTURES[name]
        spec, inputs = fixture.write(folder)
        torch.manual_seed(0)
        argv = ["--data", spec, *fixture.argv, *argv]
        model = task.build_model(_train_args(task, argv), task.datasets(spec, "train"))
        with torch.no_grad():       # random weights large enough to give varied tokens
            for parameter in model.parameters():
                if parameter.dim() > 1:
                    nn.init.normal_(parameter, std=0.4)
        model.eval().save(folder / "model")
        _BUILT[key] = model, inputs + ["one more input, longer than the others"], folder / "model", export(
            task, str(folder / "model"), "onnx", folder / "onnx", optimize=False)
    return _BUILT[key]


def _resized(graph: Graph, sizes: dict[str, int], vocab: int) -> dict[str, torch.Tensor]:
    """Random inputs of ``graph`` with its dynamic axes at ``sizes``: token ids below ``vocab``, masks
    mostly True, the write position inside the cache."""
    generator = torch.Generator().manual_seed(sum(sizes.values()))
    inputs = {}
    for name, example in graph.inputs.items():
        axes = graph.axes.get(name, {})
        shape = [sizes[axes[i]] if i in axes else size for i, size in enumerate(example.shape)]
        if name == "position":
            inputs[name] = torch.tensor(sizes["capacity"] - 2)
        elif example.dtype == torch.bool:
            inputs[name] = torch.rand(shape, generator=generator) < 0.8
        elif example.dtype == torch.long:
            inputs[name] = torch.randint(0, vocab, shape, generator=generator)
        else:
            inputs[name] = torch.randn(shape, generator=generator)
    return inputs


SIZES = [{"batch": 3, "tokens": 7, "capacity": 12, "source": 4, "source_tokens": 4},
         {"batch": 1, "tokens": 2, "capacity": 4, "source": 9, "source_tokens": 9}]


@pytest.mark.parametrize("name", GENERATORS)
def test_every_graph_matches_pytorch_at_two_other_sizes(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    model, _, _, folder = _built(name, tmp_path_factory)
    exported = Exported(folder)
    graphs = task_module(zoo.get_task(name)).graph(model)
    assert tuple(graphs) == PARTS[name]
    vocab = model.head.proj.weight.shape[0]
    for part, graph in graphs.items():
        for sizes in SIZES:
            inputs = _resized(graph, sizes, vocab)
            assert {k: v.shape for k, v in inputs.items()} != {k: v.shape for k, v in graph.inputs.items()}
            with torch.no_grad():
                expected = graph.module(**inputs)
            got = exported.graph(part).run(**{k: v.numpy() for k, v in inputs.items()})
            assert set(got) == set(expected)
            for key, value in expected.items():
                assert got[key].shape == tuple(value.shape), (part, key)
                if value.dtype == torch.bool:
                    assert np.array_equal(got[key], value.numpy()), (part, key)
                    continue
                difference = float(np.abs(got[key].astype(np.float64) - value.numpy()).max())
                print(f"{name} {part} {key} {tuple(value.shape)}: max abs difference {difference:.2e}")
                assert difference <= TOLERANCE, (name, part, key, difference)


@pytest.mark.parametrize("beams", [1, 2])
@pytest.mark.parametrize("name", GENERATORS)
def test_onnx_texts_equal_the_pytorch_texts(name: str, beams: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    model, inputs, _, folder = _built(name, tmp_path_factory)
    task = zoo.get_task(name)
    options = {"max_new_tokens": 8, "beams": beams}
    expected = task.predict(model, inputs, **options)
    assert len(set(expected)) == len(expected) and any(expected)     # something to compare
    assert predict_exported(task, str(folder), inputs, **options) == expected


def test_a_learned_position_decoder_exports_with_its_position_limit(tmp_path_factory: pytest.TempPathFactory) -> None:
    model, inputs, _, folder = _built("text_generation", tmp_path_factory, LEARNED)
    task = zoo.get_task("text_generation")
    assert json.loads((folder / SIDECAR).read_text())["max_positions"] == 48
    for beams in (1, 2):
        options = {"max_new_tokens": 8, "beams": beams}
        expected = task.predict(model, inputs, **options)
        assert any(expected) and predict_exported(task, str(folder), inputs, **options) == expected
    with pytest.raises(ValueError, match=r"with --max-new-tokens 40 it passes the model's 48 positions"):
        predict_exported(task, str(folder), inputs, max_new_tokens=40)


class _TorchStepper:
    """The numpy loops' step protocol over the PyTorch model's own head (no export): the reference that
    checks the numpy greedy and beam loops against zoo.generation on the same logits."""

    def __init__(self, model: zoo.ZooModel, batch: dict[str, torch.Tensor]) -> None:
        self.model, self.state = model, model.head.init_state(model, batch)
        self.start = self.state.start.numpy()

    def step(self, tokens: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits, self.state = self.model.head.step(self.model, torch.from_numpy(tokens), self.state)
        return logits.numpy()

    def reorder(self, index: np.ndarray) -> None:
        self.state.reorder(torch.from_numpy(index))
        self.start = self.start[index]


@pytest.mark.parametrize("penalty", [1.0, 0.0])
def test_numpy_loops_pick_the_tokens_of_zoo_generation(penalty: float, tmp_path_factory: pytest.TempPathFactory) -> None:
    model, _, _, _ = _built("translation", tmp_path_factory)
    batch = {"inputs": torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11], [12, 0, 0, 0]])}
    batch["mask"] = batch["inputs"] != 0
    stops = (model.tokenizer.eos_id,)
    with torch.no_grad():
        for beams in (2, 3):
            expected = model.generate(batch, beams=beams, max_new_tokens=6, length_penalty=penalty)
            assert beam_search(_TorchStepper(model, batch), beams, 6, stops, penalty) == expected
        assert greedy(_TorchStepper(model, batch), 6, stops) == model.generate(batch, max_new_tokens=6)
    logits = np.random.default_rng(0).normal(0, 5, (4, 60)).astype(np.float32)
    np.testing.assert_allclose(log_softmax(logits), torch.from_numpy(logits).log_softmax(-1).numpy(), atol=1e-5)


def test_sidecar_names_the_graphs_the_cache_and_the_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> None:
    model, _, _, folder = _built("translation", tmp_path_factory)
    sidecar = json.loads((folder / SIDECAR).read_text())
    assert (sidecar["task"], sidecar["format"], sorted(sidecar["graphs"])) == ("translation", "onnx",
                                                                               ["decoder", "encoder"])
    decoder = sidecar["graphs"]["decoder"]
    assert decoder["file"] == "decoder.onnx" and (folder / "decoder.onnx").is_file()
    inputs = {i["name"]: i["shape"] for i in decoder["inputs"]}
    layers, heads = len(model.head.stack.blocks), model.head.stack.blocks[0].attn.heads
    head_dim = model.head.embed.embedding_dim // heads
    assert inputs["past_keys"] == [layers, "batch", heads, "capacity", head_dim] and inputs["position"] == []
    assert [o["name"] for o in decoder["outputs"]] == ["logits", "present_keys", "present_values", "present_key_mask"]
    assert sidecar["kv_cache"]["layout"] == ["layers", "batch", "heads", "capacity", "head_dim"]
    assert (sidecar["kv_cache"]["layers"], sidecar["kv_cache"]["heads"]) == (layers, heads)
    assert (folder / sidecar["tokenizer"]).is_file() and sidecar["opset"] >= 18
    text = json.loads((_built("text_generation", tmp_path_factory)[3] / SIDECAR).read_text())
    assert sorted(text["graphs"]) == ["decoder", "prefill"] and text["max_positions"] is None


def test_cli_predict_runtime_onnx_prints_what_torch_prints(tmp_path_factory: pytest.TempPathFactory,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, inputs, checkpoint, folder = _built("text_generation", tmp_path_factory)
    printed = []
    for runtime, path in (("torch", checkpoint), ("onnx", folder)):
        main(["predict", "text_generation", "--checkpoint", str(path), "--runtime", runtime, "--beams", "2",
              "--max-new-tokens", "6", *inputs])
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and printed[0].count("\n") == len(inputs)


# ---- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, flag", [({"temperature": 0.7}, "--temperature 0.7 (sampling)"),
                                           ({"stream": True}, "--stream")])
def test_sampling_and_streaming_need_the_pytorch_model(options: dict[str, Any], flag: str,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    _, inputs, _, folder = _built("text_generation", tmp_path_factory)
    with pytest.raises(ZooError, match=rf"^{re.escape(flag)} needs the PyTorch model; drop it or use --runtime torch"):
        predict_exported(zoo.get_task("text_generation"), str(folder), inputs, **options)


def test_an_export_without_the_graph_asked_for_says_so(tmp_path_factory: pytest.TempPathFactory) -> None:
    _, _, _, folder = _built("translation", tmp_path_factory)
    with pytest.raises(ZooError, match=r"this export has no graph 'prefill' \(it has encoder, decoder\)"):
        Exported(folder).graph("prefill")
    with pytest.raises(ZooError, match=r"is a translation export; use `zoo predict translation`"):
        predict_exported(zoo.get_task("text_generation"), str(folder), ["the cat"])
    with pytest.raises(ZooError, match=r"input 1 is an empty text"):
        predict_exported(zoo.get_task("translation"), str(folder), [" "])


# ---- the other heads: attention decoding for speech, set prediction for detection -------------------------

OTHER_HEADS = {"asr": ["--head", "seq2seq", "--head-args", json.dumps({"depth": 1, "heads": 2})],
               "detection": ["--head", "detr", "--head-args", json.dumps({"dim": 32, "heads": 2, "depth": 1,
                                                                          "num_queries": 6})]}
OTHER_OPTIONS = {"asr": [{"max_new_tokens": 6}, {"max_new_tokens": 6, "beams": 2}, {}],
                 "detection": [{"score_threshold": 0.05, "max_detections": 10}]}


@pytest.mark.parametrize("name", sorted(OTHER_HEADS))
def test_the_seq2seq_asr_and_detr_heads_predict_as_the_pytorch_model(name: str, tmp_path: Path) -> None:
    task, fixture = zoo.get_task(name), FIXTURES[name]
    spec, inputs = fixture.write(tmp_path)
    torch.manual_seed(0)
    argv = ["--data", spec, *fixture.argv, *OTHER_HEADS[name]]
    model = task.build_model(_train_args(task, argv), task.datasets(spec, "train")).eval()
    with torch.no_grad():       # spread the head's outputs: varied units, confident classes
        for parameter in (model.head.parameters() if name == "asr" else [model.head.class_embed.weight]):
            if parameter.dim() > 1:
                nn.init.normal_(parameter, std=0.4 if name == "asr" else 1.0)
    model.save(tmp_path / "model")
    folder = export(task, str(tmp_path / "model"), "onnx", tmp_path / "onnx", optimize=False)
    assert sorted(json.loads((folder / SIDECAR).read_text()).get("graphs", ["model"])) == (
        ["decoder", "encoder"] if name == "asr" else ["model"])
    for options in OTHER_OPTIONS[name]:
        expected = task.predict(model, inputs, **options)
        got = predict_exported(task, str(folder), inputs, **options)
        if name == "asr":
            assert got == expected and any(expected)
        else:
            assert any(p["detections"] for p in expected)
            _same(name, got, expected)
