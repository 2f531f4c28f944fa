"""``zoo.pipeline`` against ``zoo predict`` on tiny models of all six tasks, typed results, batching, in-memory
inputs, errors; ``model.generate_text`` against the generating tasks' predictions.

Each task's tiny model (random weights, the fixtures of test_task_contract) is saved once per module; the
`zoo predict --json` lines of the CLI, run in-process, are the reference every pipeline result is held to.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import zoo
from tasks.engine.export_command import export
from tests.test_task_contract import FIXTURES, saved_tiny_model
from zoo.cli import main
from zoo.errors import ZooError
from zoo.results import Classification, Detection, Generation, Result, Transcription, Translation

pytestmark = pytest.mark.usefixtures("one_thread")
TASKS = ("sentiment", "image_classification", "detection", "asr", "text_generation", "translation")
TYPES = {"sentiment": Classification, "image_classification": Classification, "detection": Detection,
         "asr": Transcription, "text_generation": Generation, "translation": Translation}
def _flags(options: dict[str, Any]) -> list[str]:
    """`zoo predict` flags of predict options: ``{"max_new_tokens": 4}`` -> ``["--max-new-tokens", "4"]``."""
    return [part for key, value in options.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def _cli_predictions(name: str, folder: Path, inputs: list[Any], capsys: pytest.CaptureFixture[str],
                     *extra: str) -> list[Any]:
    """The predictions `zoo predict NAME --json` prints for ``inputs``, one JSON line each."""
    capsys.readouterr()
    main(["predict", name, "--checkpoint", str(folder), "--json", *map(str, inputs),
          *_flags(FIXTURES[name].predict_options), *extra])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["input"] for line in lines] == [str(i) for i in inputs]
    return [line["prediction"] for line in lines]


def _as_printed(name: str, prediction: Any) -> dict[str, Any]:
    """What the typed result of a `zoo predict` prediction must hold, field by field."""
    if name == "sentiment":
        return {"label": prediction["label"], "score": prediction["probability"],
                "scores": prediction["probabilities"], "explanation": None}
    if name == "image_classification":
        return {"label": prediction["label"], "score": prediction["probability"],
                "scores": {t["label"]: t["probability"] for t in prediction["top"]}, "explanation": None}
    if name == "detection":
        found = prediction["detections"]
        return {"boxes": [d["box"] for d in found], "labels": [d["label"] for d in found],
                "scores": [d["score"] for d in found], "width": prediction["width"], "height": prediction["height"],
                "drawn": None}
    return {"text": prediction}


@pytest.mark.parametrize("name", TASKS)
def test_the_pipeline_gives_what_zoo_predict_prints(name: str, tmp_path_factory: pytest.TempPathFactory,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder, inputs = saved_tiny_model(name, tmp_path_factory)
    expected = _cli_predictions(name, folder, inputs, capsys)
    pipe = zoo.pipeline(name, folder, device="cpu", **FIXTURES[name].predict_options)
    results = pipe(inputs)
    assert isinstance(results, list) and len(results) == len(inputs)
    assert all(type(r) is TYPES[name] for r in results)
    assert [r.to_dict() for r in results] == [_as_printed(name, p) for p in expected]
    if name == "detection":
        assert any(r.boxes for r in results)       # something was compared
        assert all(len(r.boxes) == len(r.labels) == len(r.scores) and all(len(b) == 4 for b in r.boxes)
                   for r in results)


@pytest.mark.parametrize("name", TASKS)
def test_one_input_gives_one_result_and_a_list_what_one_by_one_gives(name: str,
                                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    folder, inputs = saved_tiny_model(name, tmp_path_factory)
    pipe = zoo.pipeline(name, folder, device="cpu", **FIXTURES[name].predict_options)
    alone = [pipe(item) for item in inputs]
    assert all(isinstance(r, Result) for r in alone)
    together = pipe(inputs, batch_size=len(inputs))
    assert [type(r) for r in together] == [type(r) for r in alone]
    for a, b in zip(together, alone):
        if name == "detection":      # a batch pads its images: scores and boxes equal to float noise
            assert a.labels == b.labels and a.scores == pytest.approx(b.scores, abs=1e-3)
        elif isinstance(a, Classification):
            assert a.label == b.label and a.score == pytest.approx(b.score, abs=1e-5)
        else:
            assert a == b


@pytest.mark.parametrize("name", TASKS)
def test_results_survive_a_json_round_trip(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder, inputs = saved_tiny_model(name, tmp_path_factory)
    for result in zoo.pipeline(name, folder, device="cpu", **FIXTURES[name].predict_options)(inputs):
        data = result.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert type(result).from_dict(json.loads(json.dumps(data))) == result


def test_a_run_folder_predicts_with_its_best_checkpoint(tmp_path_factory: pytest.TempPathFactory,
                                                        tmp_path: Path) -> None:
    folder, inputs = saved_tiny_model("sentiment", tmp_path_factory)
    run = tmp_path / "run"
    zoo.load(folder).save(run / "step-4")
    (run / "best").symlink_to("step-4")
    assert zoo.pipeline("sentiment", run, device="cpu")(inputs) == zoo.pipeline("sentiment", folder)(inputs)
    assert zoo.load(run).task == "sentiment"


def test_the_model_goes_to_the_device_asked_for_or_a_gpu_when_torch_sees_one(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = saved_tiny_model("sentiment", tmp_path_factory)
    loaded = zoo.load
    places: list[str] = []

    def load(path: Any, map_location: Any = "cpu") -> zoo.ZooModel:
        places.append(str(map_location))
        return loaded(path)

    monkeypatch.setattr(zoo, "load", load)
    for seen, device, expected in ((False, None, "cpu"), (True, None, "cuda:0"), (True, "cpu", "cpu"),
                                   (True, torch.device("cuda", 0), "cuda:0")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda seen=seen: seen)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        zoo.pipeline("sentiment", folder, device=device)
        assert places.pop() == expected, (seen, device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ZooError, match="torch sees no CUDA device"):
        zoo.pipeline("sentiment", folder, device="cuda")


def test_drawings_and_explanations_are_named_in_the_results(tmp_path_factory: pytest.TempPathFactory,
                                                            tmp_path: Path) -> None:
    folder, inputs = saved_tiny_model("detection", tmp_path_factory)
    drawn = zoo.pipeline("detection", folder, device="cpu", score_threshold=0.0, out=str(tmp_path / "drawn"))(inputs)
    assert [Path(r.drawn).name for r in drawn] == [Path(i).stem + ".png" for i in inputs]
    assert all(Path(r.drawn).is_file() for r in drawn)
    folder, inputs = saved_tiny_model("image_classification", tmp_path_factory)
    explained = zoo.pipeline("image_classification", folder, device="cpu")(inputs[0], explain_to=str(tmp_path))
    assert Path(explained.explanation).is_file() and explained.label in explained.scores


# ---- in-memory inputs ------------------------------------------------------------------------------------------

def test_images_in_memory_give_what_their_files_give(tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in ("image_classification", "detection"):
        folder, inputs = saved_tiny_model(name, tmp_path_factory)
        pipe = zoo.pipeline(name, folder, device="cpu", **FIXTURES[name].predict_options)
        pixels = np.array(Image.open(inputs[0]).convert("RGB"))                     # (H, W, 3) uint8
        expected = pipe(inputs[0])
        chw = torch.from_numpy(pixels).permute(2, 0, 1)                              # (3, H, W)
        for item in (Path(inputs[0]), Image.fromarray(pixels), pixels, chw, chw.float() / 255):
            assert pipe(item) == expected, (name, type(item).__name__)
        with pytest.raises(ZooError, match=r"input 1: a float64 array of shape \(.*\); pass \(H, W, 3\)"):
            pipe(pixels.astype(np.float64))
        with pytest.raises(ZooError, match=r"input 2: a torch.uint8 tensor of shape \(1, 3, .*\); pass \(3, H, W\)"):
            pipe([chw, chw[None]])


def test_audio_arrays_give_what_their_files_give(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder, inputs = saved_tiny_model("asr", tmp_path_factory)
    pipe = zoo.pipeline("asr", folder, device="cpu")
    samples, rate = soundfile.read(inputs[0], dtype="float32")
    assert rate == 16000 and samples.ndim == 1
    expected = pipe(inputs)
    assert pipe([samples, torch.from_numpy(soundfile.read(inputs[1], dtype="float32")[0])]) == expected
    assert pipe([(samples * 32767).astype(np.int16)]) == pipe([inputs[0]]) == [expected[0]]
    at_8k = pipe(samples[::2].copy(), sample_rate=8000)       # resampled to the model's 16 kHz
    assert isinstance(at_8k, Transcription)
    with pytest.raises(ZooError, match=r"input 1: samples of shape \(2, \d+\); pass one channel"):
        pipe(np.stack([samples, samples]))
    with pytest.raises(ZooError, match="input 1: .* shorter than the 0.1 s a speech model needs"):
        pipe(samples[:100])


# ---- errors ----------------------------------------------------------------------------------------------------

def test_bad_arguments_fail_in_one_line_before_the_model_loads(tmp_path_factory: pytest.TempPathFactory,
                                                              tmp_path: Path) -> None:
    folder, _ = saved_tiny_model("sentiment", tmp_path_factory)
    with pytest.raises(ZooError, match="unknown task 'sentimnet'; did you mean 'sentiment'"):
        zoo.pipeline("sentimnet", folder)
    with pytest.raises(ZooError, match="sentiment prediction has no option 'top_p'; it takes batch_size"):
        zoo.pipeline("sentiment", tmp_path / "absent", top_p=0.5)
    with pytest.raises(ZooError, match="batch_size=0; pass a whole number >= 1"):
        zoo.pipeline("sentiment", folder, batch_size=0)
    with pytest.raises(ZooError, match="runtime 'tensorrt': expected torch or onnx"):
        zoo.pipeline("sentiment", folder, runtime="tensorrt")
    with pytest.raises(ZooError, match="checkpoint_or_run: checkpoint .*absent does not exist"):
        zoo.pipeline("sentiment", tmp_path / "absent")
    with pytest.raises(ZooError, match="is a sentiment model; use `zoo predict sentiment`"):
        zoo.pipeline("translation", folder)
    with pytest.raises(ZooError, match="no export.json; pass a folder written by `zoo export`"):
        zoo.pipeline("text_generation", folder, runtime="onnx")


@pytest.mark.parametrize(("name", "item", "kind"), [("sentiment", 42, "int"), ("translation", b"bytes", "bytes"),
                                                    ("image_classification", {"path": "a.png"}, "dict"),
                                                    ("asr", 3.5, "float")])
def test_an_input_of_the_wrong_type_is_named_in_one_line(name: str, item: Any, kind: str,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    folder, inputs = saved_tiny_model(name, tmp_path_factory)
    pipe = zoo.pipeline(name, folder, device="cpu")
    with pytest.raises(ZooError, match=f"zoo.pipeline\\('{name}'\\): input 2 is a {kind}; {name} reads ") as error:
        pipe([inputs[0], item])
    assert "\n" not in str(error.value)
    with pytest.raises(ZooError, match="no inputs"):
        pipe([])
    with pytest.raises(ZooError, match="has no option 'colour'"):
        pipe(inputs, colour="red")


# ---- onnxruntime -----------------------------------------------------------------------------------------------

@pytest.mark.slow     # exporting takes about 10 s on a shared 2-core CPU
def test_runtime_onnx_gives_what_zoo_predict_runtime_onnx_prints(tmp_path_factory: pytest.TempPathFactory,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder, inputs = saved_tiny_model("sentiment", tmp_path_factory)
    exported = export(zoo.get_task("sentiment"), str(folder), "onnx", folder.parent / "onnx", optimize=False)
    expected = _cli_predictions("sentiment", exported, inputs, capsys, "--runtime", "onnx")
    pipe = zoo.pipeline("sentiment", exported, runtime="onnx")
    assert pipe.model is None and "onnxruntime" in repr(pipe)
    assert [r.to_dict() for r in pipe(inputs)] == [_as_printed("sentiment", p) for p in expected]
    torch_results = zoo.pipeline("sentiment", folder, device="cpu")(inputs)
    assert [r.label for r in pipe(inputs)] == [r.label for r in torch_results]
    with pytest.raises(ZooError, match="runs on the CPU under onnxruntime"):
        zoo.pipeline("sentiment", exported, device="cuda", runtime="onnx")


# ---- generate_text ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["text_generation", "translation"])
def test_generate_text_gives_the_task_predictions(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder, inputs = saved_tiny_model(name, tmp_path_factory)
    model, task = zoo.load(folder), zoo.get_task(name)
    assert model.generate_text(inputs, max_new_tokens=4) == task.predict(model, inputs, max_new_tokens=4)
    assert model.generate_text(inputs, max_new_tokens=4, num_beams=2) == task.predict(model, inputs, max_new_tokens=4,
                                                                                       beams=2)
    sampled = model.generate_text(inputs, max_new_tokens=4, do_sample=True, top_k=5, seed=1)
    assert sampled == task.predict(model, inputs, max_new_tokens=4, temperature=1.0, top_k=5, seed=1)
    assert all(isinstance(text, str) for text in sampled)
    with pytest.raises(ZooError, match="takes a list of texts"):
        model.generate_text(inputs[0])


def test_generate_text_refuses_a_model_that_does_not_generate_text(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder, inputs = saved_tiny_model("sentiment", tmp_path_factory)
    with pytest.raises(ZooError, match="needs a text model that generates"):
        zoo.load(folder).generate_text(inputs)
