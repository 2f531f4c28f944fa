"""Sentiment benchmark workloads: ours and the BERT reference, same shapes, each step doing its work."""
from __future__ import annotations

import pytest
import torch

import zoo
from tasks.engine.bench import parameter_count, run_context
from tasks.sentiment.bench import QUICK, batch

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pairs():
    return zoo.get_task("sentiment").bench_workloads(torch.device("cpu"), "fp32", quick=True)


def test_pairs_share_shapes_and_units(pairs):
    shape, batch_size = QUICK
    assert [ours.mode for ours, _ in pairs] == ["train", "inference"]
    for ours, reference in pairs:
        assert reference is not None and ours.mode == reference.mode
        assert ours.unit == reference.unit == "sentences" and ours.items == reference.items == batch_size
        assert ours.config == reference.config
        assert "BertForSequenceClassification" in reference.name
        # same shape: within the few extra tensors BERT has (positions, token types, pooler)
        extra = (shape.seq_len + 2 + shape.dim + 1) * shape.dim
        assert abs(parameter_count(reference.model) - parameter_count(ours.model)) <= extra + 4 * shape.dim


def test_inference_steps_give_logits(pairs):
    shape, batch_size = QUICK
    for workload in pairs[1]:
        with run_context(torch.device("cpu"), "fp32", workload.mode):
            logits = workload.step()
        assert logits.shape == (batch_size, shape.classes) and torch.isfinite(logits).all()


def test_train_steps_update_weights_and_factory_resizes(pairs):
    for workload in pairs[0]:
        before = [p.detach().clone() for p in workload.model.parameters()]
        with run_context(torch.device("cpu"), "fp32", workload.mode):
            workload.step()
        changed = [not torch.equal(b, p) for b, p in zip(before, workload.model.parameters())]
        assert sum(changed) >= 0.9 * len(changed), workload.name
        assert workload.factory(3).items == 3


def test_batches_are_padded_like_real_sentences():
    shape, _ = QUICK
    data = batch(shape, 16, torch.device("cpu"))
    lengths = data["mask"].sum(dim=1)
    assert lengths.min() >= shape.seq_len // 2 and lengths.max() <= shape.seq_len
    assert (data["inputs"][~data["mask"]] == 0).all() and (data["inputs"][data["mask"]] >= 4).all()
