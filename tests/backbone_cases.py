"""The one list of backbones the registry-loop tests run over, and the README table they back.

``CASES`` holds every registered backbone (our own at depth 1 with the reduced arguments of
``tests/backbone_configs.py``, and ``transformers`` with a tiny BERT config), the ``timm/`` and
``torchaudio/`` representatives of ``ADAPTER_ARGS``, and transformers folders written by
``save_pretrained`` and loaded by ``zoo.create_model(pretrained=...)`` (a wav2vec2 that stays
wrapped, a GPT-2 converted into our decoder). ``tests/test_backbones.py``
tests each backbone alone, ``tests/test_head_backbone_matrix.py`` every registered head on it;
``fit_table()`` is the README's table of which heads fit which backbones, computed by the same
``fits`` those tests use to decide which pairs must work and which must be refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import zoo
from tests.backbone_configs import ADAPTER_ARGS, TEXT_VOCAB, WRAPPED_ARGS, small_args
from zoo.pretrained import load_pretrained
from zoo.pretrained.wrapped import FAMILIES

# The modality a prefix resolver gives every name it resolves (docs/design.md, "Prefix resolvers").
PREFIX_MODALITY = {"timm": "image", "torchaudio": "audio"}
YES, NEEDS_CAUSAL, OTHER_MODALITY = "yes", "needs causal", "-"


@dataclass(frozen=True)
class BackboneCase:
    """A backbone to build small: registry ``name`` with ``small_args``, or (``folder`` set) the
    transformers folder ``folder`` writes, loaded by ``pretrained=``. ``modality``/``causal``: what
    the built backbone must say it is (tested); ``row``: its row of the README table."""

    id: str
    row: str
    modality: str
    causal: bool
    name: str | None = None
    folder: Callable[[Path], None] | None = None

    @property
    def zoo_built(self) -> bool:
        """One of our own registered backbones (not an adapter, not a wrapped transformers model)."""
        return self.name is not None and "modality" in zoo.BACKBONES.meta(self.name)


def _write_wav2vec2(folder: Path) -> None:
    """A tiny random transformers wav2vec2 (32 wide, one layer) as ``save_pretrained`` writes it."""
    import transformers

    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                                         conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
                                         mask_time_prob=0.0)
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(folder, safe_serialization=True)


def _write_gpt2(folder: Path) -> None:
    """A tiny random transformers GPT-2 (32 wide, one layer), which ``pretrained=`` converts into our decoder."""
    import transformers

    config = transformers.GPT2Config(vocab_size=TEXT_VOCAB, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)


def _registered(name: str) -> BackboneCase:
    meta = zoo.BACKBONES.meta(name)
    if "modality" in meta:
        return BackboneCase(name, f"`{name}`", meta["modality"], bool(meta.get("causal")), name)
    family = WRAPPED_ARGS["config"]["model_type"]   # `transformers`: the wrapped family decides
    return BackboneCase(name, f"`{name}` (a `{family}` config)", FAMILIES[family].modality, False, name)


def _adapter(name: str) -> BackboneCase:
    prefix = name.split("/")[0]
    tested = ", ".join(f"`{n.split('/')[1]}`" for n in ADAPTER_ARGS if n.startswith(f"{prefix}/"))
    return BackboneCase(name, f"`{prefix}/<name>` (tested: {tested})", PREFIX_MODALITY[prefix], False, name)


FOLDERS = [BackboneCase("pretrained-wav2vec2", "`pretrained=` a transformers wav2vec2 folder (stays wrapped)",
                        "audio", False, folder=_write_wav2vec2),
           BackboneCase("pretrained-gpt2", "`pretrained=` a transformers GPT-2 folder (converted)", "text", True,
                        folder=_write_gpt2)]
CASES: list[BackboneCase] = ([_registered(n) for n in zoo.list_backbones()] + [_adapter(n) for n in ADAPTER_ARGS]
                             + FOLDERS)
IDS = [case.id for case in CASES]


def _source(case: BackboneCase, tmp: Path) -> Path:
    """The folder of a ``folder`` case, written under ``tmp`` on first use."""
    folder = tmp / case.id
    if not folder.is_dir():
        case.folder(folder)
    return folder


def build_backbone(case: BackboneCase, tmp: Path) -> nn.Module:
    """The case's backbone alone (seeded: the same weights every time)."""
    torch.manual_seed(0)
    if case.folder is not None:
        return load_pretrained(_source(case, tmp)).backbone
    return zoo.create_backbone(case.name, **small_args(case.name, case.modality))


def build_model(case: BackboneCase, head: str, tmp: Path, **head_args: Any) -> zoo.ZooModel:
    """Head ``head`` (registry name) on the case's backbone, seeded."""
    torch.manual_seed(0)
    if case.folder is not None:
        return zoo.create_model(pretrained=_source(case, tmp), head=head, **head_args)
    return zoo.create_model(case.name, head, backbone_args=small_args(case.name, case.modality), **head_args)


def fits(head: str, case: BackboneCase) -> str:
    """``yes`` when head ``head`` accepts the case's backbone, else why not: its modality (``-``) or causality."""
    meta = zoo.HEADS.meta(head)
    if case.modality not in meta["accepts"]:
        return OTHER_MODALITY
    return NEEDS_CAUSAL if meta.get("causal") and not case.causal else YES


def fit_table() -> list[str]:
    """The README table: a row per ``row`` of CASES (its cases agree: tested), a column per registered head."""
    heads = zoo.list_heads()
    rows: dict[str, list[str]] = {}
    for case in CASES:
        rows.setdefault(case.row, [fits(head, case) for head in heads])
    return (["| backbone | " + " | ".join(f"`{head}`" for head in heads) + " |", "|---" * (len(heads) + 1) + "|"]
            + [f"| {row} | " + " | ".join(cells) + " |" for row, cells in rows.items()])
