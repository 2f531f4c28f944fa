"""The asr benchmark workloads: pairs of the same shapes, each step doing real work."""
from __future__ import annotations

import torch

import zoo
from tasks.engine.bench import run_context


def test_quick_cpu_workloads_run_one_step_each():
    device = torch.device("cpu")
    pairs = zoo.get_task("asr").bench_workloads(device, "fp32", quick=True)
    references = [reference.name if reference else None for _, reference in pairs]
    assert [ours.mode for ours, _ in pairs] == ["train", "inference", "inference", "train", "inference"]
    assert "torchaudio Conformer" in references[0] and "torchaudio Conformer" in references[1]
    assert references[2] is None and references[3] is None   # front end alone; no wav2vec2 training in quick
    assert "wav2vec2_base" in references[4]
    for ours, reference in pairs:
        assert ours.unit == "audio seconds" and ours.items == ours.batch_size * (2.0 if "log-mel" in ours.name else 1.0)
        if reference is not None:
            assert (reference.unit, reference.items, reference.batch_size) == (ours.unit, ours.items, ours.batch_size)
        for workload in filter(None, (ours, reference)):
            before = [p.detach().clone() for p in workload.model.parameters()]
            with run_context(device, "fp32", workload.mode):
                workload.step()
            changed = any(not torch.equal(a, b) for a, b in zip(before, workload.model.parameters()))
            assert changed == (workload.mode == "train"), workload.name
    resized = pairs[0][0].factory(3)
    assert resized.batch_size == 3 and resized.items == 6.0
