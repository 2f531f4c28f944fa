"""Every registered task keeps the Task contract on tiny data this file writes (no `zoo data prepare`).

For each name of ``zoo.list_tasks()``: the task reads a fixture in one of its file formats,
builds a tiny model from the flags `zoo train` would parse, its collate gives a batch with a
finite loss, ``evaluate`` reports the primary metric ``task.metric.name``, a saved and
reloaded model predicts the same, and every benchmark pair of ``bench_workloads(cpu, fp32,
quick=True)`` puts ours and the reference in the same unit and items per step, each step
doing real work (one step each). A task registered later fails here until ``FIXTURES`` says
how to make its tiny data.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from num2words import num2words

import zoo
from benchmarks.flops import count_flops
from tasks.engine.bench import run_context
from tasks.engine.data import write_jsonl
from tasks.engine.evaluation import EvalOptions
from tasks.engine.task import AIM, Task, Workload
from tasks.engine.trainer import add_train_arguments
from tests.test_asr_task import TEXTS as SPOKEN, noise_clip
from tests.test_detection_task import _coco
from tests.test_image_classification_task import _folder
from tests.test_sentiment_task import _reviews, _write_csv
from tests.test_text_generation_task import corpus

TINY = json.dumps({"dim": 32, "depth": 1, "heads": 2})
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- tiny data per task ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fixture:
    """How to give a task tiny data: ``write(folder) -> (data SPEC, inputs to predict)``, the `zoo train`
    flags of a tiny model, and predict options."""

    write: Callable[[Path], tuple[str, list[Any]]]
    argv: tuple[str, ...]
    predict_options: dict[str, Any] = field(default_factory=dict)


def _sentiment(folder: Path) -> tuple[str, list[Any]]:
    return f"csv:{_write_csv(folder / 'reviews.csv', _reviews(24, seed=3))}", ["great and superb", "dull"]


def _translation(folder: Path) -> tuple[str, list[Any]]:
    path = folder / "numbers.tsv"
    path.write_text("".join(f"{num2words(n)}\t{num2words(n, lang='fr')}\n" for n in range(60)), encoding="utf-8")
    return f"tsv:{path}", ["three", "forty-two"]


def _text_generation(folder: Path) -> tuple[str, list[Any]]:
    return f"text:{corpus(folder, paragraphs=20)}", ["the cat", "we saw"]


def _image_classification(folder: Path) -> tuple[str, list[Any]]:
    images = _folder(folder / "images", classes=2, per_class=4)
    return f"imagefolder:{images}", [str(images / "c0" / "0.png"), str(images / "c1" / "1.png")]


def _asr(folder: Path) -> tuple[str, list[Any]]:
    rows = []
    for i, text in enumerate(SPOKEN[:4]):
        noise_clip(folder / f"clip{i}.wav", 0.3 + 0.1 * i, i)
        rows.append({"audio_filepath": f"clip{i}.wav", "text": text})
    write_jsonl(folder / "train.jsonl", rows)
    return f"manifest:{folder / 'train.jsonl'}", [str(folder / "clip0.wav"), str(folder / "clip3.wav")]


def _speech_translation(folder: Path) -> tuple[str, list[Any]]:
    rows = []
    for i, text in enumerate(SPOKEN[:4]):
        noise_clip(folder / f"clip{i}.wav", 0.3 + 0.1 * i, i)
        rows.append({"audio_filepath": f"clip{i}.wav", "translation": num2words(i + 1, lang="fr")})
    write_jsonl(folder / "train.jsonl", rows)
    return f"manifest:{folder / 'train.jsonl'}", [str(folder / "clip0.wav"), str(folder / "clip3.wav")]


def _detection(folder: Path) -> tuple[str, list[Any]]:
    annotations = _coco(folder / "scenes", 4, seed=1)
    images = folder / "scenes" / "images"
    return f"coco:{annotations}", [str(images / "1.png"), str(images / "2.png")]


def _captioning(folder: Path) -> tuple[str, list[Any]]:
    from tests.test_captioning_data import captioned_folder

    tsv = captioned_folder(folder / "captioned", 8)
    return f"tsv:{tsv}", [str(tsv.parent / "0.png"), str(tsv.parent / "1.png")]


FIXTURES: dict[str, Fixture] = {
    "sentiment": Fixture(_sentiment, ("--backbone-args", TINY, "--vocab-size", "64", "--max-len", "32",
                                      "--token-dropout", "0")),
    "translation": Fixture(_translation, ("--backbone-args", TINY, "--head-args", '{"depth": 1, "heads": 2}',
                                          "--vocab-size", "60", "--eval-beams", "1"), {"max_new_tokens": 4}),
    "text_generation": Fixture(_text_generation, ("--backbone-args", TINY, "--vocab-size", "60", "--block-size", "16"),
                               {"max_new_tokens": 4}),
    "image_classification": Fixture(_image_classification, ("--backbone-args", TINY)),
    "asr": Fixture(_asr, ("--backbone-args", json.dumps({"dim": 32, "depth": 1, "heads": 2, "n_mels": 40}),)),
    "speech_translation": Fixture(_speech_translation, ("--backbone-args", json.dumps(
        {"dim": 32, "depth": 1, "heads": 2, "n_mels": 40}), "--vocab-size", "30"), {"max_new_tokens": 4}),
    "detection": Fixture(_detection, ("--backbone", "vit_tiny", "--backbone-args", json.dumps(
        {"img_size": 64, "patch_size": 8, "dim": 32, "depth": 1, "heads": 2}), "--head", "fcos",
        "--head-args", '{"dim": 32, "tower_depth": 1}', "--transform", '{"scale_range": [1.0, 1.0], "color_jitter": 0}'),
        {"score_threshold": 0.0}),
    "captioning": Fixture(_captioning, ("--backbone-args", json.dumps({"dim": 32, "depth": 1, "heads": 2}),
                                        "--head-args", '{"depth": 1, "heads": 2}', "--vocab-size", "40"),
                          {"max_new_tokens": 4}),
}
TASKS = zoo.list_tasks()


def _fixture(name: str) -> Fixture:
    if name not in FIXTURES:
        pytest.fail(f"task {name!r} has no tiny fixture: add to FIXTURES in {__file__} a writer of a few samples "
                    f"in a format the task reads, the `zoo train {name}` flags of a tiny model and predict options")
    return FIXTURES[name]


def _train_args(task: Task, argv: list[str]) -> argparse.Namespace:
    """The namespace `zoo train TASK ARGV` parses (the trainer's flags and the task's)."""
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    task.add_arguments(parser)
    return parser.parse_args(argv)


def tiny_model(name: str, folder: Path) -> tuple[zoo.ZooModel, str, list[Any]]:
    """Task ``name``'s fixture written into ``folder``: (its tiny model as `zoo train` builds it, seeded
    0; the data SPEC; the predict inputs)."""
    task, fixture = zoo.get_task(name), FIXTURES[name]
    spec, inputs = fixture.write(folder)
    torch.manual_seed(0)
    model = task.build_model(_train_args(task, ["--data", spec, *fixture.argv]), task.datasets(spec, "train"))
    return model, spec, inputs


_SAVED: dict[str, tuple[Path, list[Any]]] = {}


def saved_tiny_model(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """(model folder, predict inputs) of :func:`tiny_model`, saved once per test session (read only)."""
    if name not in _SAVED:
        folder = tmp_path_factory.mktemp(name)
        model, _, inputs = tiny_model(name, folder)
        model.save(folder / "model")
        _SAVED[name] = folder / "model", inputs
    return _SAVED[name]


# ---- the contract ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TASKS)
def test_collate_loss_evaluate_and_save_load_predictions(name: str, tmp_path: Path) -> None:
    fixture = _fixture(name)
    task = zoo.get_task(name)
    spec, inputs = fixture.write(tmp_path)
    args = _train_args(task, ["--data", spec, *fixture.argv])
    train = task.datasets(spec, "train")
    torch.manual_seed(0)
    model = task.build_model(args, train)
    assert model.task == name
    train = task.for_model(train, model)     # as the trainer trains on it

    batch = task.make_collate(model, train=True)([train[i] for i in range(min(4, len(train)))])
    loss = model.loss(model(batch), batch)["loss"]
    assert torch.isfinite(loss) and loss.item() > 0

    model.eval()
    metrics = task.evaluate(model, task.datasets(spec, "all"), EvalOptions.from_args(args))
    assert task.metric.name in metrics, f"{name}: evaluate gave {sorted(metrics)} without the primary metric"
    assert math.isfinite(metrics[task.metric.name])

    predictions = task.predict(model, inputs, **fixture.predict_options)
    assert len(predictions) == len(inputs)
    model.save(tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    assert task.predict(loaded, inputs, **fixture.predict_options) == predictions


def _does_real_work(workload: Workload) -> None:
    """One step under the harness's context: a training step changes the weights; an inference step
    counts FLOPs or, for a copy or a read (unit GB, no FLOPs), returns as many bytes as it claims to move
    (a read: the sum of a buffer of float32 ones)."""
    if workload.mode == "train":
        assert workload.model is not None, f"{workload.name}: a training workload without its model"
        before = [p.detach().clone() for p in workload.model.parameters()]
        with run_context(CPU, "fp32", workload.mode):
            workload.step()
        assert any(not torch.equal(a, p) for a, p in zip(before, workload.model.parameters())), workload.name
        return
    results = []
    with run_context(CPU, "fp32", workload.mode):
        flops = count_flops(lambda: results.append(workload.step()))
    if flops == 0 and workload.unit == "GB" and results[0].numel() == 1:   # a read-only stream: a sum of ones
        assert 4 * results[0].item() == pytest.approx(workload.items * 1e9, rel=1e-6), workload.name
    elif flops == 0 and workload.unit == "GB":   # a copy: bytes read + written, the STREAM convention
        assert 2 * results[0].numel() * results[0].element_size() == round(workload.items * 1e9), workload.name
    else:
        assert flops > 0, f"{workload.name}: the step counts no FLOPs"


SLOW_BENCH = {"detection"}  # 8-20 s on a shared 2-core CPU: ViT-S and ResNet-50 training steps


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_BENCH else []) for n in TASKS])
def test_bench_pairs_match_units_and_items_and_do_real_work(name: str) -> None:
    pairs = zoo.get_task(name).bench_workloads(CPU, "fp32", quick=True)
    assert pairs, f"{name}: no benchmark workloads"
    stepped: set[int] = set()
    for ours, reference in pairs:
        assert ours.items > 0
        if reference is not None:
            assert reference.unit == ours.unit and reference.mode == ours.mode, (ours.name, reference.name)
            if ours.unit != "GB":   # bandwidth rows compare rates of different amounts of bytes by design
                assert reference.items == ours.items, (ours.name, reference.name)
            # the runner reads a pair's aim and how its sides differ from our side only
            assert (reference.aim, reference.differs) == (AIM, ""), (ours.name, reference.name)
        for workload in (ours, reference):
            if workload is not None and id(workload) not in stepped:  # a reference shared by several rows: once
                stepped.add(id(workload))
                _does_real_work(workload)


@pytest.mark.parametrize("name", TASKS)
def test_demo_flags_parse_and_build_a_model(name: str, tmp_path: Path) -> None:
    """`zoo demo` appends ``task.demo_args`` to `zoo train`: the task's parser takes them and a model builds
    from them (on the tiny fixture, whose flags they override)."""
    task, fixture = zoo.get_task(name), _fixture(name)
    spec, _ = fixture.write(tmp_path)
    args = _train_args(task, ["--data", spec, *fixture.argv, *task.demo_args])
    model = task.build_model(args, task.datasets(spec, "train"))
    assert isinstance(model, zoo.ZooModel)
