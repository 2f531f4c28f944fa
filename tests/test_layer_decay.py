"""``--layer-decay``: parameter groups by depth (BEiT / timm numbering), scheduled per group."""
from __future__ import annotations

import re

import pytest
import torch

import zoo
from tasks.engine import trainer
from tasks.engine.trainer import build_optimizer, train
from tests.test_trainer import ToyTask, make_args, rows
from zoo.errors import ZooError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    """A ViT of 3 blocks with a classification head."""
    return zoo.create_model("vit_tiny", "classification", num_classes=3,
                            backbone_args={"img_size": 32, "patch_size": 8, "dim": 32, "depth": 3, "heads": 2})


def expected_scale(name: str, rate: float, depth: int = 3) -> float:
    """The formula, by parameter name: head and final norm 1, block i rate^(L-i), stem rate^(L+1)."""
    block = re.match(r"backbone\.stack\.blocks\.(\d+)\.", name)
    if block:
        return rate ** (depth - int(block.group(1)))
    if name.startswith(("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed")):
        return rate ** (depth + 1)
    return 1.0


def test_group_lrs_follow_the_depth_formula_and_keep_the_decay_rules(vit):
    optimizer = build_optimizer(vit, 0.01, 0.05, CPU, layer_decay=0.5)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert len(group_of) == sum(1 for _ in vit.parameters())
    for name, param in vit.named_parameters():
        group = group_of[id(param)]
        assert group["lr"] == pytest.approx(0.01 * expected_scale(name, 0.5)), name
        assert group["lr_scale"] == pytest.approx(expected_scale(name, 0.5)), name
        assert group["weight_decay"] == (0.05 if param.ndim >= 2 else 0.0), name
    assert {round(g["lr_scale"], 6) for g in optimizer.param_groups} == {1.0, 0.5, 0.25, 0.125, 0.0625}


def test_rate_one_gives_the_old_optimizer_exactly(vit):
    params = list(vit.parameters())
    old = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.05},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=0.01, betas=(0.9, 0.95), fused=False)
    new = build_optimizer(vit, 0.01, 0.05, CPU, layer_decay=1.0)
    assert new.state_dict() == old.state_dict()


def test_frozen_parameters_stay_out_of_every_group(vit):
    vit.backbone.stack.blocks[0].requires_grad_(False)
    try:
        optimizer = build_optimizer(vit, 0.01, 0.05, CPU, layer_decay=0.5)
    finally:
        vit.requires_grad_(True)
    grouped = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not grouped & {id(p) for p in vit.backbone.stack.blocks[0].parameters()}
    assert 0.125 not in {g["lr_scale"] for g in optimizer.param_groups}


def test_a_backbone_without_blocks_is_refused_in_one_line(tmp_path):
    task = ToyTask()
    with pytest.raises(ZooError, match=r"^--layer-decay: Sequential has no stack.blocks .*--layer-decay 1$"):
        train(task, make_args(task, "--out", tmp_path / "run", "--max-steps", 1, "--layer-decay", 0.5))


def test_the_schedule_multiplies_each_groups_own_lr(tmp_path, monkeypatch):
    """Every step, each group's lr is the logged (scheduled) lr times its scale."""
    monkeypatch.setattr(trainer, "layer_scales",
                        lambda model, rate: {id(p): (rate if id(p) in {id(b) for b in model.backbone.parameters()} else 1.0)
                                             for p in model.parameters()})
    seen: list[list[float]] = []
    step = torch.optim.AdamW.step

    def recording_step(self, *a, **k):
        seen.append(sorted(g["lr"] for g in self.param_groups))
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    task = ToyTask()
    run = train(task, make_args(task, "--out", tmp_path / "run", "--max-steps", 5, "--warmup-steps", 2,
                                "--layer-decay", 0.25, "--lr", 0.1))
    logged = [row["lr"] for row in rows(run)]
    assert len(seen) == len(logged) == 5
    for lrs, lr in zip(seen, logged):   # groups: backbone (decay, no decay), head (decay, no decay)
        assert lrs == pytest.approx([0.25 * lr, 0.25 * lr, lr, lr])
    assert len(set(logged)) > 1      # the schedule moved
