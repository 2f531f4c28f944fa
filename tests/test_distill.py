"""`zoo train TASK --distill-from RUN_DIR` (issue 14 item 5): the loss equals its hand computation,
a student that is a copy of its teacher has nothing to learn, a short run lowers the KL (logged in
metrics.jsonl), and teachers that cannot teach this student are refused in one line."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

import zoo
from heads.base import SoftOutputs
from heads.classification import ClassificationHead
from heads.ctc import CTCHead
from tasks.engine.commands import train_command
from tasks.engine.distill import Distiller, check_teacher, distill_losses, distiller, soft_kl
from tests.test_sentiment_task import _reviews, _write_csv
from tests.test_task_contract import _train_args
from zoo.cli import main
from zoo.errors import ZooError

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"dim": 32, "depth": 1, "heads": 2}


def test_loss_equals_the_hand_computation() -> None:
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    teacher = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    temperature, weight, task_loss = 2.0, 0.3, torch.tensor(1.7)
    kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        zs = sum(math.exp(v / temperature) for v in s_row)
        zt = sum(math.exp(v / temperature) for v in t_row)
        for s, t in zip(s_row, t_row):
            p, q = math.exp(t / temperature) / zt, math.exp(s / temperature) / zs
            kl += p * math.log(p / q) / len(student)
    losses = distill_losses({"loss": task_loss, "nll": task_loss}, SoftOutputs(student), SoftOutputs(teacher),
                            weight, temperature)
    assert losses["distill_kl"].item() == pytest.approx(kl, rel=1e-5)
    assert losses["loss"].item() == pytest.approx((1 - weight) * 1.7 + weight * temperature ** 2 * kl, rel=1e-5)
    assert losses["task_loss"].item() == pytest.approx(1.7) and "nll" in losses


def test_binary_kl_and_box_term_for_dense_detectors() -> None:
    student, teacher = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, -1.0]])
    kl = 0.0
    for s, t in zip(student[0].tolist(), teacher[0].tolist()):
        p, q = 1 / (1 + math.exp(-t)), 1 / (1 + math.exp(-s))
        kl += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    assert soft_kl(student, teacher, 1.0, binary=True).item() == pytest.approx(kl, rel=1e-5)
    boxes_s, boxes_t = torch.zeros(1, 4), torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    losses = distill_losses({"loss": torch.tensor(0.0)}, SoftOutputs(student, True, boxes_s),
                            SoftOutputs(teacher, True, boxes_t), 1.0, 1.0)
    assert losses["distill_box"].item() == pytest.approx(2.5)
    assert losses["loss"].item() == pytest.approx(kl + 2.5, rel=1e-5)


def test_soft_outputs_keep_only_real_positions() -> None:
    lm = zoo.create_model("text_decoder_tiny", "lm", backbone_args={"vocab_size": 40, **TINY})
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    batch = {"inputs": torch.randint(0, 40, (2, 5)), "mask": mask}
    outputs = lm(batch)
    assert lm.head.soft_outputs(outputs, batch).logits.shape == (int(lm.loss(outputs, batch)["weight"]), 40)
    frames = {"logits": torch.randn(2, 6, 5), "lengths": torch.tensor([6, 3])}
    assert torch.equal(CTCHead(8, 5).soft_outputs(frames, {}).logits,
                       torch.cat([frames["logits"][0], frames["logits"][1, :3]]))
    rows = torch.randn(3, 4)        # the base rule: every row of (B, C) logits
    assert torch.equal(ClassificationHead(8, 4).soft_outputs({"logits": rows}, {}).logits, rows)


def test_a_copy_of_the_teacher_has_nothing_to_learn() -> None:
    teacher = zoo.create_model("text_encoder_tiny", "classification", num_classes=3,
                               backbone_args={"vocab_size": 40, **TINY})
    student = copy.deepcopy(teacher).train()
    batch = {"inputs": torch.randint(0, 40, (4, 6)), "mask": torch.ones(4, 6, dtype=torch.bool),
             "labels": torch.tensor([0, 1, 2, 0])}
    losses = Distiller(teacher, student, weight=1.0, temperature=2.0)(student(batch), batch)
    assert losses["loss"].item() == pytest.approx(0.0, abs=1e-6)
    losses["loss"].backward()       # the teacher's outputs are plain tensors autograd can use
    assert all(p.grad is None for p in teacher.parameters())


def test_outputs_of_other_shapes_are_refused() -> None:
    teacher = zoo.create_model("text_encoder_tiny", "classification", num_classes=3,
                               backbone_args={"vocab_size": 40, **TINY})
    student = zoo.create_model("text_encoder_tiny", "classification", num_classes=2,
                               backbone_args={"vocab_size": 40, **TINY})
    batch = {"inputs": torch.randint(0, 40, (2, 6)), "labels": torch.tensor([0, 1])}
    with pytest.raises(ZooError, match=r"--distill-from .*other shapes \(\(2, 3\) vs \(2, 2\)\)"):
        Distiller(teacher, student, 0.5, 2.0)(student(batch), batch)


def _sentiment(tmp_path: Path, name: str, vocab: int = 64, sharpen: float = 1.0, **backbone: int) -> tuple[str, Path]:
    """A sentiment model (random weights, its classifier scaled by ``sharpen`` so that it is confident)
    built on a CSV the test writes, saved as ``tmp_path/name``."""
    task = zoo.get_task("sentiment")
    spec = f"csv:{_write_csv(tmp_path / 'reviews.csv', _reviews(40, seed=3))}"
    args = _train_args(task, ["--data", spec, "--vocab-size", str(vocab), "--max-len", "32",
                              "--backbone-args", json.dumps({**TINY, **backbone})])
    torch.manual_seed(1)
    model = task.build_model(args, task.datasets(spec, "train"))
    with torch.no_grad():
        model.head.fc.weight.mul_(sharpen)
    model.save(tmp_path / name)
    return spec, tmp_path / name


def test_a_short_run_lowers_the_kl(tmp_path: Path) -> None:
    spec, teacher = _sentiment(tmp_path, "teacher", sharpen=30.0, dim=48)
    run = train_command(zoo.get_task("sentiment"), [
        "--data", spec, "--out", str(tmp_path / "run"), "--vocab-size", "64", "--max-len", "32",
        "--backbone-args", json.dumps({"dim": 16, "depth": 1, "heads": 2, "dropout": 0}), "--token-dropout", "0",
        "--head-args", json.dumps({"dropout": 0}),
        "--distill-from", str(teacher), "--distill-weight", "1", "--max-steps", "12", "--epochs", "12", "--batch-size", "40",
        "--lr", "0.03", "--warmup-steps", "0", "--no-progress", "--logger", "csv", "--checkpoint-every", "1",
        "--keep", "12"])
    task, taught = zoo.get_task("sentiment"), zoo.load(teacher)
    samples = [{"text": s["text"]} for s in task.datasets(spec, "train")]

    def kl_on_the_training_set(student: zoo.ZooModel) -> float:
        batch = task.make_collate(student, train=False)(samples)
        with torch.no_grad():
            return soft_kl(student(batch)["logits"], taught(batch)["logits"], 2.0).item()

    first, last = kl_on_the_training_set(zoo.load(run / "step-1")), kl_on_the_training_set(zoo.load(run / "step-12"))
    assert last < 0.5 * first
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"train_task_loss", "train_distill_kl"} <= set(rows[0])
    assert rows[-1]["train_loss"] == pytest.approx(4 * rows[-1]["train_distill_kl"], rel=1e-4)   # w=1: T^2 * KL


def test_a_teacher_of_another_tokenizer_or_task_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, teacher = _sentiment(tmp_path, "teacher", vocab=60)
    _, student_folder = _sentiment(tmp_path, "student", vocab=64)
    task, student = zoo.get_task("sentiment"), zoo.load(student_folder)
    with pytest.raises(ZooError, match="--distill-from .* tokenizer differs"):
        distiller(task, str(teacher), student, 0.5, 2.0, torch.device("cpu"))
    relabelled = copy.deepcopy(student)
    relabelled.head.labels = ["bad", "good"]
    with pytest.raises(ZooError, match="--distill-from T: the teacher predicts the labels"):
        check_teacher(relabelled, student, "T")
    spelled = copy.deepcopy(student)
    spelled.head.alphabet = "_abc"
    with pytest.raises(ZooError, match="predicts the alphabet '_abc' but the student None"):
        check_teacher(spelled, student, "T")
    with pytest.raises(ZooError, match="is a sentiment model"):
        distiller(zoo.get_task("image_classification"), str(teacher), student, 0.5, 2.0, torch.device("cpu"))
    with pytest.raises(SystemExit):
        main(["train", "sentiment", "--distill-from", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: --distill-from") and "\n" not in err
    with pytest.raises(SystemExit):
        main(["train", "sentiment", "--distill-weight", "2"])
    assert "--distill-weight" in capsys.readouterr().err
