"""Image classification benchmark workloads: ours and timm's do the same work on the same shapes."""
from __future__ import annotations

import torch

from tasks.engine.bench import parameter_count, run_context
from tasks.image_classification import bench

CPU = torch.device("cpu")


def test_vit_pairs_match_timm_and_step_in_both_modes():
    for mode in ("inference", "train"):
        ours, theirs = bench.vit_pair("vit_tiny", "vit_tiny_patch16_224", mode, batch=2, device=CPU,
                                      compile=False, image_size=32)
        assert parameter_count(ours.model) == parameter_count(theirs.model) > 5_000_000
        assert (ours.unit, ours.items, ours.mode, ours.config) == (theirs.unit, theirs.items, mode, theirs.config)
        assert ours.name == "zoo vit_tiny" and theirs.name == "timm vit_tiny_patch16_224"
        for workload in (ours, theirs):
            before = [p.detach().clone() for p in workload.model.parameters()]
            with run_context(CPU, "bf16", mode):
                result = workload.step()
            changed = [not torch.equal(a, p) for a, p in zip(before, workload.model.parameters())]
            if mode == "inference":
                assert result.shape == (2, bench.CLASSES) and not any(changed)
            else:  # AdamW skips a parameter without a gradient: every one changing means every one got one
                assert torch.isfinite(result) and all(changed), workload.name
        bigger = ours.factory(3)
        assert bigger.items == 3 and bigger.model is ours.model


def test_builtin_row_trains_the_task_default_model():
    workload = bench.builtin_workload(batch=4, device=CPU, compile=False)
    assert workload.mode == "train" and workload.config.startswith("28x28, patch_size 7, dim 128")
    before = [p.detach().clone() for p in workload.model.parameters()]
    with run_context(CPU, "fp32", "train"):
        workload.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, workload.model.parameters()))
    assert bench.batches(CPU, quick=True).train <= 2 < bench.batches(torch.device("cuda"), quick=True).train
