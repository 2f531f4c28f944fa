"""The seq2seq head: target framing, loss, decoding through the step protocol, any backbone."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import zoo
from heads.seq2seq import IGNORE, frame_targets
from zoo.generation import generate
from zoo.tokenizer import Tokenizer, pad_ids

VOCAB = 40


def tiny_model(seed: int = 0, **head_args) -> zoo.ZooModel:
    torch.manual_seed(seed)
    args = dict(vocab_size=VOCAB, depth=2, heads=2, **head_args)
    return zoo.create_model("text_encoder_tiny", "seq2seq",
                            backbone_args=dict(vocab_size=VOCAB, dim=32, depth=1, heads=2), **args).eval()


def sources(*rows: list[int]) -> dict[str, torch.Tensor]:
    inputs, mask = pad_ids(list(rows))
    return {"inputs": inputs, "mask": mask}


SOURCES = sources([5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17])


def test_frame_targets_adds_bos_eos_and_ignores_padding():
    targets, mask = pad_ids([[7, 8, 9], [5]])
    inputs, labels = frame_targets(targets, mask)
    bos, eos, pad = Tokenizer.bos_id, Tokenizer.eos_id, Tokenizer.pad_id
    assert inputs.tolist() == [[bos, 7, 8, 9], [bos, 5, pad, pad]]
    assert labels.tolist() == [[7, 8, 9, eos], [5, eos, IGNORE, IGNORE]]
    with pytest.raises(ValueError, match="right-padded"):
        frame_targets(targets, mask.flip(1))


def test_loss_is_label_smoothed_cross_entropy_over_real_tokens():
    model = tiny_model(label_smoothing=0.1)
    targets, target_mask = pad_ids([[7, 8, 9], [5], [6, 6]])
    batch = {**SOURCES, "targets": targets, "target_mask": target_mask}
    outputs = model(batch)
    logits, labels = outputs["logits"], outputs["labels"]
    assert logits.shape == (3, 4, VOCAB)
    losses = model.loss(outputs, batch)
    flat_logits, flat_labels = logits.flatten(0, 1), labels.flatten()
    expected = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, label_smoothing=0.1)
    assert torch.allclose(losses["loss"], expected, atol=1e-5)
    assert torch.allclose(losses["nll"], F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE), atol=1e-5)


def test_backward_reaches_every_parameter():
    model = tiny_model().train()
    targets, target_mask = pad_ids([[7, 8, 9], [5], [6, 6]])
    batch = {**SOURCES, "targets": targets, "target_mask": target_mask}
    model.loss(model(batch), batch)["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_teacher_forced_logits_match_stepwise_decoding():
    model = tiny_model()
    targets, target_mask = pad_ids([[7, 8, 9, 10]])
    batch = {**sources([5, 6, 7]), "targets": targets, "target_mask": target_mask}
    forced = model(batch)["logits"][0]  # (5, V)
    state = model.head.init_state(model, batch)
    tokens = state.start
    for position, token in enumerate([7, 8, 9, 10]):
        logits, state = model.head.step(model, tokens, state)
        assert torch.allclose(logits[0], forced[position], atol=1e-5)
        tokens = torch.tensor([[token]])


@pytest.mark.parametrize("static", [False, True])
def test_cached_decoding_equals_uncached(static):
    model = tiny_model()
    head = model.head
    cached = head.init_state(model, SOURCES, use_cache=True, static_cache=static, max_new_tokens=6)
    uncached = head.init_state(model, SOURCES, use_cache=False)
    tokens_a = tokens_b = cached.start
    for _ in range(6):
        logits_a, cached = head.step(model, tokens_a, cached)
        logits_b, uncached = head.step(model, tokens_b, uncached)
        assert torch.allclose(logits_a, logits_b, atol=1e-5)
        tokens_a = tokens_b = logits_a.argmax(dim=-1, keepdim=True)
    options = dict(max_new_tokens=8, stop_tokens=())
    assert model.generate(SOURCES, static_cache=static, **options) == model.generate(SOURCES, use_cache=False, **options)


def test_beam_search_with_one_beam_equals_greedy():
    for seed in range(3):
        model = tiny_model(seed)
        assert model.generate(SOURCES, max_new_tokens=10, beams=1) == model.generate(SOURCES, max_new_tokens=10)


def test_beam_search_batched_equals_one_by_one():
    model = tiny_model(1)
    batched = model.generate(SOURCES, max_new_tokens=8, beams=3)
    for row, expected in enumerate(batched):
        real = SOURCES["mask"][row]
        alone = sources(SOURCES["inputs"][row][real].tolist())
        assert model.generate(alone, max_new_tokens=8, beams=3) == [expected]


def test_source_padding_does_not_change_translation():
    model = tiny_model(2)
    short = [12, 13, 14]
    alone = sources(short)
    padded = sources(short, list(range(4, 20)))
    assert padded["inputs"].shape[1] > 3 and not padded["mask"][0, 3:].any()
    state_alone = model.head.init_state(model, alone)
    state_padded = model.head.init_state(model, padded)
    logits_alone, _ = model.head.step(model, state_alone.start, state_alone)
    logits_padded, _ = model.head.step(model, state_padded.start, state_padded)
    assert torch.allclose(logits_alone[0], logits_padded[0], atol=1e-5)
    for beams in (1, 3):
        assert model.generate(padded, max_new_tokens=8, beams=beams)[0] == \
            model.generate(alone, max_new_tokens=8, beams=beams)[0]


def test_shared_embedding_is_one_tensor_and_survives_save_load(tmp_path):
    model = tiny_model(share_embedding=True)
    assert model.head.proj.weight is model.head.embed.weight is model.backbone.embed.weight
    model.save(tmp_path)
    loaded = zoo.load(tmp_path)
    assert loaded.head.proj.weight is loaded.backbone.embed.weight
    assert loaded.generate(SOURCES, max_new_tokens=6, beams=2) == model.generate(SOURCES, max_new_tokens=6, beams=2)
    with pytest.raises(ValueError, match="share_embedding needs"):
        zoo.create_model("text_encoder_tiny", "seq2seq", backbone_args=dict(vocab_size=VOCAB, dim=32, depth=1, heads=2),
                         vocab_size=VOCAB + 1, depth=1, heads=2, share_embedding=True)


def test_plugs_onto_an_audio_backbone():  # image backbones: tests/test_captioning_head.py
    torch.manual_seed(0)
    model = zoo.create_model("speech_encoder_tiny", "seq2seq", vocab_size=VOCAB, dim=32, depth=1, heads=2).eval()
    waves = torch.randn(2, 8000)
    mask = torch.ones(2, 8000, dtype=torch.bool)
    mask[1, 5000:] = False
    targets, target_mask = pad_ids([[7, 8, 9], [5]])
    batch = {"inputs": waves, "mask": mask, "targets": targets, "target_mask": target_mask}
    assert torch.isfinite(model.loss(model(batch), batch)["loss"])
    generated = model.generate(batch, max_new_tokens=5, stop_tokens=())
    assert [len(row) for row in generated] == [5, 5]


def test_reorder_copies_cross_keys_only_when_rows_change_source():
    model = tiny_model()
    state = model.head.init_state(model, SOURCES)
    state.reorder(torch.arange(3).repeat_interleave(2))  # 2 beams per source
    keys = state.context_kv[0][0]
    assert torch.equal(keys[0], keys[1]) and not torch.equal(keys[1], keys[2])
    state.reorder(torch.tensor([1, 0, 3, 3, 5, 4]))  # beams reshuffled within their source
    assert state.context_kv[0][0] is keys
    state.reorder(torch.tensor([2, 2, 0, 0, 4, 4]))  # rows 0-1 now translate source 1, rows 2-3 source 0
    assert torch.equal(state.context_kv[0][0][0], keys[2]) and torch.equal(state.context_kv[0][0][2], keys[0])
    assert state.source.tolist() == [1, 1, 0, 0, 2, 2]
    assert torch.equal(state.context_mask[0], SOURCES["mask"][1])


@dataclass
class _ScriptedState:
    start: torch.Tensor
    length: int = 0

    def reorder(self, index: torch.Tensor) -> None:
        self.start = self.start[index]


class _ScriptedHead:
    """Every step: token 4 very likely, EOS (3) at p=0.05, other tokens rare; EOS certain after 5 tokens."""

    def init_state(self, model, batch, **options) -> _ScriptedState:
        return _ScriptedState(torch.full((1, 1), 2))

    def step(self, model, tokens, state):
        state.length += 1
        probs = torch.full((tokens.shape[0], 6), 0.01)
        probs[:, 4], probs[:, 3] = 0.91, 0.05
        if state.length > 5:
            probs[:, 3], probs[:, 4] = 0.95, 0.01
        return probs.log(), state


def test_beam_search_does_not_stop_on_unlikely_early_eos():
    """Early EOS candidates of junk beams must not end the search while a better beam still grows."""
    model = SimpleNamespace(head=_ScriptedHead(), tokenizer=None)
    options = dict(max_new_tokens=10, stop_tokens=(3,))
    assert generate(model, {}, **options) == [[4] * 5]
    for beams in (1, 2, 4):
        assert generate(model, {}, beams=beams, **options) == [[4] * 5]
