"""Every registered head on one tiny backbone of every kind in the registry (timm ``tests/test_models.py`` style).

Heads and backbones come from the registries: a head or a backbone kind registered later is
tested here without editing this file. A *kind* is a (modality, causal) pair of the backbone
registry (text encoder, causal text decoder, ViT, speech encoder); each is represented by its
smallest registered backbone, built with the reduced arguments of ``tests/backbone_configs.py``.

What a head needs beyond the inputs is found by asking it: the model runs on a batch holding
only ``inputs`` and ``mask``, and the first batch key the head looks up and misses names the
target builder (``TARGETS``) that completes the batch as the batch contract of docs/design.md says.
Required head arguments come from the head factory's signature (``REQUIRED_ARGS``); a head
that reads a key or needs an argument this file does not know fails with a message saying
what to add.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import pytest
import torch

import zoo
from tests.backbone_configs import small_args
from zoo.errors import ZooError
from zoo.tokenizer import pad_ids

ROWS = 2
NUM_CLASSES = 3
TARGET_IDS = range(4, 10)   # unit ids valid for every vocabulary here: no pad/bos/eos/unk, never the CTC blank
REQUIRED_ARGS: dict[str, Any] = {"num_classes": NUM_CLASSES, "vocab_size": 40}
SMALL_HEAD_ARGS: dict[str, Any] = {"dim": 32, "depth": 1, "heads": 2, "tower_depth": 1, "num_queries": 6}


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the registries ------------------------------------------------------------------------------------

def _kinds() -> dict[str, str]:
    """``"<modality>"`` or ``"<modality>-causal"`` -> the smallest registered backbone of that kind."""
    chosen: dict[str, tuple[int, str]] = {}
    for name in zoo.list_backbones():
        meta = zoo.BACKBONES.meta(name)
        if "modality" not in meta:      # `transformers`: its modality comes from the wrapped model's config
            continue
        config = meta.get("config", {})
        size = config.get("dim", 0) * config.get("depth", 0)
        kind = meta["modality"] + ("-causal" if meta.get("causal") else "")
        if kind not in chosen or (size, name) < chosen[kind]:
            chosen[kind] = (size, name)
    return {kind: name for kind, (_, name) in sorted(chosen.items())}


KINDS = _kinds()
HEADS = zoo.list_heads()


def _accepts(head: str, kind: str) -> bool:
    meta = zoo.HEADS.meta(head)
    backbone = zoo.BACKBONES.meta(KINDS[kind])
    return backbone["modality"] in meta["accepts"] and (not meta.get("causal") or bool(backbone.get("causal")))


ACCEPTED = [(h, k) for h in HEADS for k in KINDS if _accepts(h, k)]
REFUSED = [(h, k) for h in HEADS for k in KINDS if not _accepts(h, k)]


def test_the_registries_hold_every_kind_the_matrix_promises() -> None:
    assert set(KINDS) >= {"text", "text-causal", "image", "audio"}, KINDS
    assert all(any(h == head for h, _ in ACCEPTED) for head in HEADS), "a head that accepts no backbone kind"


def _head_args(head: str) -> dict[str, Any]:
    """Arguments for the ``head`` factory: required ones from REQUIRED_ARGS, sizes shrunk where it has them."""
    args = {}
    for name, parameter in inspect.signature(zoo.HEADS.get(head)).parameters.items():
        if name == "backbone" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if parameter.default is parameter.empty:
            if name not in REQUIRED_ARGS:
                pytest.fail(f"head {head!r} requires argument {name!r}, which this test cannot derive: "
                            f"add a value for it to REQUIRED_ARGS in {__file__}")
            args[name] = REQUIRED_ARGS[name]
        elif name in SMALL_HEAD_ARGS:
            args[name] = SMALL_HEAD_ARGS[name]
    return args


def _model(head: str, kind: str) -> zoo.ZooModel:
    name = KINDS[kind]
    torch.manual_seed(0)
    return zoo.create_model(name, head, backbone_args=small_args(name, zoo.BACKBONES.meta(name)["modality"]),
                            **_head_args(head))


# ---- batches ---------------------------------------------------------------------------------------------

def _text(model: zoo.ZooModel) -> dict[str, torch.Tensor]:
    """Token ids of two lengths; left-padded for a causal backbone (what its generation needs), else right."""
    generator = torch.Generator().manual_seed(1)
    vocab = model.backbone.embed.num_embeddings
    rows = [torch.randint(4, vocab, (n,), generator=generator).tolist() for n in (7, 4)]
    if model.backbone.causal:
        width = max(map(len, rows))
        inputs = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows])
        return {"inputs": inputs, "mask": mask}
    inputs, mask = pad_ids(rows)
    return {"inputs": inputs, "mask": mask}


def _images(model: zoo.ZooModel) -> dict[str, torch.Tensor]:
    """Images at the backbone's size, the second padded (a 24x32 picture in a 32x32 batch)."""
    size = model.backbone.cfg.img_size
    mask = torch.ones(ROWS, size, size, dtype=torch.bool)
    mask[1, 3 * size // 4:] = False
    generator = torch.Generator().manual_seed(2)
    return {"inputs": torch.randn(ROWS, 3, size, size, generator=generator) * mask[:, None], "mask": mask,
            "image_sizes": torch.tensor([[size, size], [3 * size // 4, size]])}


def _waves(model: zoo.ZooModel) -> dict[str, torch.Tensor]:
    """Waveforms of 0.4 s and 0.3 s at 16 kHz, right-padded."""
    lengths = (6400, 4800)
    generator = torch.Generator().manual_seed(3)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]  # (B, S)
    return {"inputs": 0.1 * torch.randn(ROWS, max(lengths), generator=generator) * mask, "mask": mask}


INPUTS: dict[str, Callable[[zoo.ZooModel], dict[str, torch.Tensor]]] = {"text": _text, "image": _images,
                                                                       "audio": _waves}


def _class_labels(batch: dict[str, Any]) -> dict[str, Any]:
    return {"labels": torch.arange(ROWS) % NUM_CLASSES}


def _unit_targets(batch: dict[str, Any]) -> dict[str, Any]:
    """Target unit ids without BOS/EOS, right-padded (3 and 2 units)."""
    targets, target_mask = pad_ids([list(TARGET_IDS[:3]), list(TARGET_IDS[3:5])])
    return {"targets": targets, "target_mask": target_mask}


def _boxes(batch: dict[str, Any]) -> dict[str, Any]:
    """One box per image (xyxy pixels inside its unpadded size) and its class."""
    sizes = batch["image_sizes"].tolist()
    boxes = [torch.tensor([[w * 0.1, h * 0.2, w * 0.6, h * 0.9]]) for h, w in sizes]
    return {"boxes": boxes, "labels": [torch.tensor([i % NUM_CLASSES]) for i in range(ROWS)]}


# the first batch key a head asks for and misses -> the builder of the targets it reads
TARGETS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "labels": _class_labels, "targets": _unit_targets, "boxes": _boxes}


def _inputs(model: zoo.ZooModel) -> dict[str, Any]:
    modality = model.backbone.modality
    if modality not in INPUTS:
        pytest.fail(f"no input builder for {modality!r} backbones: add one to INPUTS in {__file__}")
    return INPUTS[modality](model)


def _batch(model: zoo.ZooModel, head: str) -> dict[str, Any]:
    """Inputs plus the targets the head turns out to read (see the module docstring)."""
    batch = _inputs(model)
    used = []
    while True:
        try:
            model.loss(model(batch), batch)
            return batch
        except KeyError as missing:
            key = missing.args[0]
            if key not in TARGETS or key in used:
                pytest.fail(f"head {head!r} reads batch[{key!r}], which no builder in TARGETS of {__file__} "
                            f"makes: add a builder following the batch contract of docs/design.md")
            used.append(key)
            batch.update(TARGETS[key](batch))


# ---- accepted pairs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("head, kind", ACCEPTED, ids=[f"{h}-{k}" for h, k in ACCEPTED])
def test_loss_is_finite_and_gradients_reach_backbone_and_head(head: str, kind: str) -> None:
    model = _model(head, kind).train()
    batch = _batch(model, head)
    losses = model.loss(model(batch), batch)
    assert torch.isfinite(losses["loss"]) and losses["loss"].ndim == 0
    losses["loss"].backward()

    def reached(module: torch.nn.Module) -> list[str]:
        return [n for n, p in module.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]

    assert reached(model.backbone), f"no gradient reaches the {KINDS[kind]} backbone"
    assert reached(model.head), f"no gradient reaches the {head} head"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("head, kind", ACCEPTED, ids=[f"{h}-{k}" for h, k in ACCEPTED])
def test_decode_generate_and_save_load_round_trip(head: str, kind: str, tmp_path) -> None:
    model = _model(head, kind).eval()
    batch = _batch(model, head)
    with torch.no_grad():
        outputs = model(batch)
    assert len(model.decode(outputs)) == ROWS
    generates = hasattr(model.head, "init_state") and hasattr(model.head, "step")
    sources = {"inputs": batch["inputs"], "mask": batch["mask"]}
    if generates:
        generated = model.generate(sources, max_new_tokens=3)
        assert len(generated) == ROWS and all(len(row) == 3 for row in generated)  # no tokenizer: no stop token
        assert all(isinstance(t, int) for row in generated for t in row)

    model.save(tmp_path / "model")
    loaded = zoo.load(tmp_path / "model")
    assert not loaded.training
    with torch.no_grad():
        again = loaded(batch)
    assert again.keys() == outputs.keys()
    for key, value in outputs.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(again[key], value, rtol=0, atol=1e-6, msg=key)
    if generates:
        assert loaded.generate(sources, max_new_tokens=3) == generated


# ---- refused pairs ---------------------------------------------------------------------------------------

def _refusal(head: str, kind: str) -> str:
    """What a refusal must name: the modality, or ``causal`` when only causality is missing."""
    modality = zoo.BACKBONES.meta(KINDS[kind])["modality"]
    return "causal" if modality in zoo.HEADS.meta(head)["accepts"] else modality


@pytest.mark.parametrize("head, kind", [pytest.param(h, k, id=f"{h}-{k}") for h, k in REFUSED])
def test_refuses_backbones_it_does_not_accept_naming_the_modality(head: str, kind: str) -> None:
    with pytest.raises(ZooError, match=rf"\b{_refusal(head, kind)}\b"):
        _model(head, kind)
