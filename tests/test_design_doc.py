"""The worked examples of docs/design.md run, and what they register keeps the contracts the page states.

Every ```python block of the page is executed in order in one namespace, in a temporary working
folder (the task example writes its tiny data file and trains a run there). The registrations
are removed afterwards, so tests that loop over the registries never see the examples.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from tasks.engine.evaluation import EvalOptions
from typing import Any, Iterator

import pytest
import torch

import zoo
from tasks.engine.task import Task
from zoo.errors import ZooError

DOC = Path(__file__).resolve().parents[1] / "docs" / "design.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
EXAMPLES = {zoo.BACKBONES: "doc_example_backbone", zoo.HEADS: "doc_example_head", zoo.TASKS: "doc_example_task"}
SPEC = "doc_example_lines:tiny.tsv"

pytestmark = pytest.mark.usefixtures("one_thread")


def python_blocks(text: str) -> list[str]:
    """The source of every ```python fenced block of a Markdown text, in order."""
    return BLOCK.findall(text)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The namespace after running every example of the page; the examples' registrations are removed after."""
    folder, previous = tmp_path_factory.mktemp("design-doc"), Path.cwd()
    namespace: dict[str, Any] = {"__name__": "doc_example", "__folder__": folder}
    os.chdir(folder)
    try:
        for number, source in enumerate(python_blocks(DOC.read_text(encoding="utf-8")), 1):
            exec(compile(source, f"{DOC} (python block {number})", "exec"), namespace)
        yield namespace
    finally:
        os.chdir(previous)
        for registry, name in EXAMPLES.items():
            registry._entries.pop(name, None)      # the registry has no public unregister


def test_the_page_has_the_three_examples() -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    registers = [name for block in blocks for name in ("register_backbone", "register_head", "register_task")
                 if f"zoo.{name}(" in block]
    assert registers == ["register_backbone", "register_head", "register_task"]


def test_the_example_backbone_and_head_compose(page: dict[str, Any]) -> None:
    assert zoo.BACKBONES.meta("doc_example_backbone") == {"modality": "text", "causal": False,
                                                          "padding_sensitive": False}
    model = zoo.create_model("doc_example_backbone", "doc_example_head", backbone_args={"dim": 12},
                             labels=["a", "b", "c", "d"])
    inputs, mask = torch.randint(0, 128, (3, 7)), torch.ones(3, 7, dtype=torch.bool)
    mask[0, 4:] = False
    features = model.backbone(inputs, mask)
    assert features.tokens.shape == (3, 7, 12) and torch.equal(features.mask, mask)
    batch = {"inputs": inputs, "mask": mask, "labels": torch.tensor([0, 3, 1])}
    outputs = model(batch)
    assert outputs["logits"].shape == (3, 4)
    losses = model.loss(outputs, batch)
    assert math.isfinite(losses["loss"].item()) and losses["weight"] == 3
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert len(model.decode(outputs)) == 3 and set(model.decode(outputs)) <= {"a", "b", "c", "d"}


def test_the_example_head_refuses_an_image_backbone(page: dict[str, Any]) -> None:
    vit = zoo.create_backbone("vit_tiny", img_size=16, patch_size=8, depth=1)
    with pytest.raises(ZooError, match="accepts text backbones"):
        zoo.create_model(vit, "doc_example_head")


def test_the_example_backbone_round_trips_through_save_and_load(page: dict[str, Any], tmp_path: Path) -> None:
    model = zoo.create_model("doc_example_backbone", "doc_example_head", labels=["x", "y"]).eval()
    model.save(tmp_path / "model")
    batch = {"inputs": torch.randint(0, 128, (2, 6))}
    assert torch.equal(zoo.load(tmp_path / "model")(batch)["logits"], model(batch)["logits"])


def test_the_example_task_reads_its_file_and_gives_a_finite_loss(page: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    task = zoo.get_task("doc_example_task")
    monkeypatch.chdir(page["__folder__"])
    splits = {split: task.datasets(SPEC, split) for split in ("train", "validation", "test", "all")}
    with pytest.raises(ZooError, match="unknown option"):
        task.datasets(SPEC + "?delimiter=,", "train")
    Path("pipes.txt").write_text("".join(f"{label}|text {i}\n" for i, label in enumerate("abcab" * 4)))
    piped = task.datasets("doc_example_lines:pipes.txt?sep=|", "all")
    assert piped.classes == ["a", "b", "c"] and piped[2] == {"text": "text 2", "label": 2}
    Path("bad.txt").write_text("pos\tfine\nno separator here\n")
    with pytest.raises(ZooError, match=r"bad.txt:2: expected LABEL"):
        task.datasets("doc_example_lines:bad.txt", "all")
    assert len(splits["all"]) == 40 and splits["all"].classes == ["neg", "pos"]
    texts = {split: {s["text"] for s in samples} for split, samples in splits.items()}
    assert texts["train"] | texts["validation"] | texts["test"] == texts["all"]
    assert not texts["train"] & (texts["validation"] | texts["test"]) and texts["validation"] and texts["test"]
    model = page["trained"]
    batch = task.make_collate(model, train=True)([splits["train"][i] for i in range(5)])
    assert batch["inputs"].dtype == torch.long and batch["mask"].shape == batch["inputs"].shape
    assert batch["labels"].shape == (5,)
    assert math.isfinite(model.loss(model(batch), batch)["loss"].item())
    metrics = task.evaluate(model, splits["test"], EvalOptions(batch_size=1))
    assert set(metrics) == {task.metric.name} and 0 <= metrics["accuracy"] <= 1


def test_the_example_run_folder_has_the_documented_layout(page: dict[str, Any]) -> None:
    run = page["__folder__"] / page["run"]
    steps = json.loads((run / "args.json").read_text())["max_steps"]
    last = f"step-{steps}"
    assert {p.name for p in run.iterdir()} == {"args.json", "metrics.jsonl", "metrics.csv", "tensorboard", "curves.png",
                                               last, "best", "last"}
    assert os.readlink(run / "best") == os.readlink(run / "last") == last
    assert {p.name for p in (run / last).iterdir()} == {"config.json", "model.safetensors", "trainer_state.json",
                                                         "trainer_state.safetensors"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, steps + 1)) and "val_accuracy" in rows[-1]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]        # it learns
    assert page["trained"].task == "doc_example_task" and set(page["predictions"]) <= {"neg", "pos"}
    assert set(page["metrics"]) == {"accuracy"}


def test_the_task_declarations_the_page_names_exist() -> None:
    for name in ("modality", "train_defaults", "head_defaults", "formats", "builtin_sets", "quick_set",
                 "sample_length", "metric", "generates", "make_collate", "build_model", "evaluate", "predict"):
        assert hasattr(Task, name), name
        assert f"`{name}" in DOC.read_text(encoding="utf-8"), name
