"""The seq2seq head on image Features: shapes, gradients reaching the backbone, decoding, text/audio unchanged."""
from __future__ import annotations

import pytest
import torch

import zoo
from zoo.tokenizer import pad_ids

pytestmark = pytest.mark.usefixtures("one_thread")
VIT = dict(img_size=32, patch_size=8, dim=32, depth=1, heads=2)


def _model() -> zoo.ZooModel:
    return zoo.create_model("vit_tiny", "seq2seq", backbone_args=VIT, vocab_size=20, depth=1, heads=2)


def test_image_tokens_are_the_memory_and_gradients_reach_the_backbone() -> None:
    model = _model()
    targets, target_mask = pad_ids([[5, 6, 7], [8]])
    batch = {"inputs": torch.randn(2, 3, 32, 32), "targets": targets, "target_mask": target_mask}
    outputs = model(batch)
    assert outputs["logits"].shape == (2, 4, 20) and outputs["labels"].shape == (2, 4)
    model.loss(outputs, batch)["loss"].backward()
    grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    state = model.head.init_state(model, batch)
    assert state.context_kv[0][0].shape[2] == 1 + 16       # class token + 4x4 patches attended to


def test_generation_greedy_and_beams_and_cached_equals_uncached() -> None:
    model = _model().eval()
    batch = {"inputs": torch.randn(3, 3, 32, 32)}
    cached = model.generate(batch, max_new_tokens=5, stop_tokens=())
    assert cached == model.generate(batch, max_new_tokens=5, stop_tokens=(), use_cache=False)
    assert [len(r) for r in model.generate(batch, max_new_tokens=5, beams=3, stop_tokens=())] == [5, 5, 5]


def test_a_timm_backbone_feeds_it_too() -> None:
    model = zoo.create_model("timm/resnet18", "seq2seq", vocab_size=20, dim=32, depth=1, heads=2)
    targets, target_mask = pad_ids([[5, 6]])
    batch = {"inputs": torch.randn(1, 3, 64, 64), "targets": targets, "target_mask": target_mask}
    assert torch.isfinite(model.loss(model(batch), batch)["loss"])


def test_registry_accepts_images_beside_text_and_audio() -> None:
    assert set(zoo.HEADS.meta("seq2seq")["accepts"]) == {"text", "audio", "image"}
