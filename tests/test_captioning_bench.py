"""Captioning benchmark workloads: ours and the transformers VisionEncoderDecoder reference do the same work."""
from __future__ import annotations

import pytest
import torch

from tasks.captioning import bench
from tasks.engine.bench import run_context

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def test_pairs_share_unit_items_and_shapes_and_run() -> None:
    pairs = bench.workloads(CPU, "fp32", quick=True)
    assert [ours.mode for ours, _ in pairs] == ["train", "inference", "inference"]
    for ours, reference in pairs:
        assert reference is not None
        assert (ours.unit, ours.items, ours.config) == (reference.unit, reference.items, reference.config)
        with run_context(CPU, "fp32", ours.mode):
            ours.step()
            reference.step()


def test_reference_has_our_shape_and_decodes_as_many_tokens() -> None:
    shape = bench.QUICK
    reference = bench._reference(shape, CPU)
    assert reference.config.encoder.hidden_size == reference.config.decoder.n_embd == shape.dim
    assert reference.config.decoder.n_layer == shape.decoder_depth
    ours = bench.generate_ours(shape, CPU, 1, 2)
    theirs = bench.generate_reference(shape, CPU, 1, 2)
    with torch.inference_mode():
        rows = ours.step()
        generated = theirs.step()
    assert [len(r) for r in rows] == [shape.new_tokens] * 2
    assert generated.shape == (2, 1 + shape.new_tokens)    # the start token + the new ones
