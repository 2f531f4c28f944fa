"""Knowledge distillation for `zoo train TASK --distill-from RUN_DIR` (issue 14 item 5).

The student (any backbone and head of the task) trains on

    loss = (1 - w) * task loss + w * (T^2 * KL(teacher_T || student_T) + L1(student boxes, teacher boxes))

where ``*_T`` are the class distributions of the logits divided by the temperature ``T`` (Hinton et
al.: the T^2 keeps the gradient scale of the soft term as T changes), over the positions the head's
``soft_outputs`` names (rows, real tokens, real frames, queries, real points; a dense detector's
classes are independent sigmoids, so its KL is the Bernoulli one per class), and the box term only
for detectors. The teacher runs once per batch in inference mode, on the same batch. Teacher and
student must read the same ids and predict the same classes: their tokenizers and labels are
compared before training, their output shapes at the first batch. The loss parts are logged as
``train_task_loss``, ``train_distill_kl`` (the KL at T, without T^2) and ``train_distill_box``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

import zoo
from heads.base import SoftOutputs
from tasks.engine.checkpoints import resolve_checkpoint
from tasks.engine.task import Task
from zoo.errors import ZooError

FLAG = "--distill-from"


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float, binary: bool = False) -> torch.Tensor:
    """Mean over rows of KL(teacher || student) of (N, C) logits divided by ``temperature``: of the
    softmax distributions, or (``binary``) summed over classes of the per-class sigmoid ones."""
    s, t = student.float() / temperature, teacher.float() / temperature
    if s.shape[0] == 0:         # no real position in the batch: nothing to match
        return s.sum()
    if not binary:
        return F.kl_div(s.log_softmax(dim=-1), t.log_softmax(dim=-1), log_target=True, reduction="batchmean")
    p = t.sigmoid()
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))  # (N, C)
    return kl.sum(dim=-1).mean()


def distill_losses(task_losses: dict[str, torch.Tensor], student: SoftOutputs, teacher: SoftOutputs,
                   weight: float, temperature: float) -> dict[str, torch.Tensor]:
    """The head's ``task_losses`` with ``loss`` replaced by the distillation mix (module docstring) and
    the parts ``task_loss``, ``distill_kl`` (and ``distill_box`` for detectors) added."""
    kl = soft_kl(student.logits, teacher.logits, temperature, student.binary)
    soft = temperature ** 2 * kl
    parts = {"task_loss": task_losses["loss"].detach(), "distill_kl": kl.detach()}
    if student.boxes is not None:
        box = F.l1_loss(student.boxes.float(), teacher.boxes.float()) if student.boxes.numel() else kl.new_zeros(())
        soft = soft + box
        parts["distill_box"] = box.detach()
    return {**task_losses, "loss": (1.0 - weight) * task_losses["loss"] + weight * soft, **parts}


class Distiller:
    """The trainer's loss with a teacher: ``distiller(outputs, batch)`` -> the losses dict of a head."""

    def __init__(self, teacher: zoo.ZooModel, student: zoo.ZooModel, weight: float, temperature: float,
                 source: str = "the teacher") -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.student, self.weight, self.temperature, self.source = student, weight, temperature, source
        self.checked = False

    def __call__(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            taught = self.teacher.head.soft_outputs(self.teacher(batch), batch)
        teacher = SoftOutputs(taught.logits.clone(), taught.binary,
                              None if taught.boxes is None else taught.boxes.clone())  # usable by autograd
        student = self.student.head.soft_outputs(outputs, batch)
        if not self.checked:
            self._check_outputs(student, teacher)
            self.checked = True
        return distill_losses(self.student.loss(outputs, batch), student, teacher, self.weight, self.temperature)

    def _check_outputs(self, student: SoftOutputs, teacher: SoftOutputs) -> None:
        """Refuse outputs that cannot be compared position by position (another vocabulary, head or stride)."""
        heads = f"the teacher's {_head(self.teacher)} head and the student's {_head(self.student)} head"
        same_kind = student.binary == teacher.binary and (student.boxes is None) == (teacher.boxes is None)
        if not same_kind or student.logits.shape != teacher.logits.shape:
            raise ZooError(f"{FLAG} {self.source}: {heads} give outputs of other shapes "
                           f"({tuple(teacher.logits.shape)} vs {tuple(student.logits.shape)}); distil between "
                           f"models of the same classes or vocabulary (detection: the same head and strides)")


def _head(model: zoo.ZooModel) -> str:
    return repr(getattr(model.head, "zoo_spec", {}).get("name", type(model.head).__name__))


def check_teacher(teacher: zoo.ZooModel, student: zoo.ZooModel, source: str) -> None:
    """Refuse a teacher whose tokenizer, labels or CTC alphabet differ from the student's, in one line."""
    fingerprints = [m.tokenizer.fingerprint() if m.tokenizer is not None else None for m in (teacher, student)]
    if fingerprints[0] != fingerprints[1]:
        raise ZooError(f"{FLAG} {source}: the teacher's tokenizer differs from the student's, so their token ids "
                       f"mean other things; train the student on the teacher's --data with its --vocab-size "
                       f"(or start it from the teacher's tokenizer with --pretrained)")
    for kind in ("labels", "alphabet"):
        values = [getattr(m.head, kind, None) for m in (teacher, student)]
        if values[0] != values[1]:
            raise ZooError(f"{FLAG} {source}: the teacher predicts the {kind} {values[0]!r} but the student "
                           f"{values[1]!r}; give the student the teacher's (train it on the teacher's data and "
                           f"head arguments)")


def distiller(task: Task, source: str, student: zoo.ZooModel, weight: float, temperature: float,
              device: torch.device) -> Distiller:
    """The :class:`Distiller` of the teacher in ``source`` (a run folder's best, or a model folder of
    ``task``) for ``student``; `zoo train` has checked the folder before any data was read."""
    teacher = zoo.load(resolve_checkpoint(source, "best"), map_location=device)
    if teacher.task and teacher.task != task.name:
        raise ZooError(f"{FLAG} {source} is a {teacher.task} model; a {task.name} student needs a {task.name} teacher")
    check_teacher(teacher, student, source)
    return Distiller(teacher, student, weight, temperature, source)
