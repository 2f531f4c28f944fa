"""Every registered head on every backbone of the one registry loop (timm ``tests/test_models.py`` style).

Heads come from the head registry and backbones from ``tests/backbone_cases.py`` (every registered
backbone at depth 1, the ``timm/`` and ``torchaudio/`` representatives, a transformers folder
loaded by ``pretrained=``): a head or a backbone registered later is tested here without editing
this file. A pair the head accepts builds, trains a step, decodes (and generates), and saves and
loads with identical outputs; a pair it does not accept is refused with a ``ZooError`` naming why.
The README's table of which heads fit which backbones is ``fit_table()`` of the same module.

What a head needs beyond the inputs is found by asking it: the model runs on a batch holding
only ``inputs`` and ``mask``, and the first batch key the head looks up and misses names the
target builder (``TARGETS``) that completes the batch as the batch contract of docs/design.md says.
Required head arguments come from the head factory's signature (``REQUIRED_ARGS``); a head
that reads a key or needs an argument this file does not know fails with a message saying
what to add.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import zoo
from tests.backbone_cases import CASES, NEEDS_CAUSAL, YES, BackboneCase, build_model, fit_table, fits
from tests.backbone_configs import IMG_SIZE, TEXT_VOCAB
from zoo.errors import ZooError
from zoo.tokenizer import pad_ids

ROWS = 2
NUM_CLASSES = 3
TARGET_IDS = range(4, 10)   # unit ids valid for every vocabulary here: no pad/bos/eos/unk, never the CTC blank
REQUIRED_ARGS: dict[str, Any] = {"num_classes": NUM_CLASSES, "vocab_size": 40}
SMALL_HEAD_ARGS: dict[str, Any] = {"dim": 32, "depth": 1, "heads": 2, "tower_depth": 1, "num_queries": 6}
README = Path(__file__).resolve().parents[1] / "README.md"


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the registries ------------------------------------------------------------------------------------

HEADS = zoo.list_heads()
ACCEPTED = [pytest.param(h, c, id=f"{h}-{c.id}") for c in CASES for h in HEADS if fits(h, c) == YES]
REFUSED = [pytest.param(h, c, id=f"{h}-{c.id}") for c in CASES for h in HEADS if fits(h, c) != YES]


def test_the_cases_hold_every_kind_and_source_the_matrix_promises() -> None:
    kinds = {c.modality + ("-causal" if c.causal else "") for c in CASES}
    assert kinds >= {"text", "text-causal", "image", "audio"}, kinds
    assert {c.name.split("/")[0] for c in CASES if c.name and "/" in c.name} == {"timm", "torchaudio"}
    assert any(c.folder is not None for c in CASES), "no pretrained transformers folder"
    assert all(any(fits(head, c) == YES for c in CASES) for head in HEADS), "a head that accepts no backbone"


def test_readme_table_is_the_tested_matrix() -> None:
    """README "Backbones and heads" holds ``fit_table()``: every cell is a pair tested in this file."""
    expected = fit_table()
    lines = README.read_text().splitlines()
    assert expected[0] in lines, "README lacks the head/backbone table; paste:\n" + "\n".join(expected)
    start = lines.index(expected[0])
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    assert lines[start:end] == expected, "README head/backbone table is stale; paste:\n" + "\n".join(expected)


def test_cases_sharing_a_readme_row_fit_the_same_heads() -> None:
    rows: dict[str, set[tuple[str, ...]]] = {}
    for case in CASES:
        rows.setdefault(case.row, set()).add(tuple(fits(head, case) for head in HEADS))
    assert all(len(cells) == 1 for cells in rows.values()), rows


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


def _model(head: str, case: BackboneCase, tmp: Path) -> zoo.ZooModel:
    return build_model(case, head, tmp, **_head_args(head))


# ---- batches ---------------------------------------------------------------------------------------------

def _text(model: zoo.ZooModel) -> dict[str, torch.Tensor]:
    """Token ids of two lengths; left-padded for a causal backbone (what its generation needs), else right."""
    generator = torch.Generator().manual_seed(1)
    rows = [torch.randint(4, TEXT_VOCAB, (n,), generator=generator).tolist() for n in (7, 4)]
    if model.backbone.causal:
        width = max(map(len, rows))
        inputs = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows])
        return {"inputs": inputs, "mask": mask}
    inputs, mask = pad_ids(rows)
    return {"inputs": inputs, "mask": mask}


def _images(model: zoo.ZooModel) -> dict[str, torch.Tensor]:
    """Images at the backbones' size, the second padded (a 24x32 picture in a 32x32 batch)."""
    size = IMG_SIZE
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

@pytest.mark.parametrize("head, case", ACCEPTED)
def test_a_training_step_is_finite_and_gradients_reach_backbone_and_head(head: str, case: BackboneCase,
                                                                         tmp_path: Path) -> None:
    model = _model(head, case, tmp_path).train()
    batch = _batch(model, head)
    losses = model.loss(model(batch), batch)
    assert torch.isfinite(losses["loss"]) and losses["loss"].ndim == 0
    losses["loss"].backward()

    def reached(module: torch.nn.Module) -> list[str]:
        return [n for n, p in module.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]

    assert reached(model.backbone), f"no gradient reaches the {case.id} backbone"
    assert reached(model.head), f"no gradient reaches the {head} head"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    name = max(reached(model.backbone), key=lambda n: float(model.backbone.get_parameter(n).grad.abs().max()))
    before = model.backbone.get_parameter(name).detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    assert not torch.equal(model.backbone.get_parameter(name), before), f"the step left {name} unchanged"
    assert torch.isfinite(model.loss(model(batch), batch)["loss"]), "the loss after the step is not finite"


@pytest.mark.parametrize("head, case", ACCEPTED)
def test_decode_generate_and_save_load_round_trip(head: str, case: BackboneCase, tmp_path: Path) -> None:
    model = _model(head, case, tmp_path).eval()
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

@pytest.mark.parametrize("head, case", REFUSED)
def test_refuses_backbones_it_does_not_accept_naming_why(head: str, case: BackboneCase, tmp_path: Path) -> None:
    """The refusal names the backbone's modality, or ``causal`` when only causality is missing."""
    reason = "causal" if fits(head, case) == NEEDS_CAUSAL else case.modality
    with pytest.raises(ZooError, match=rf"\b{reason}\b"):
        _model(head, case, tmp_path)
