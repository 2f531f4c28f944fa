"""Several heads on one backbone: ``MultiHeadModel`` runs the backbone once and every head on its Features.

``zoo.create_model(backbone=..., heads={"ctc": "ctc", "seq2seq": {"name": "seq2seq", "args": {...}}},
head_weights={"ctc": 0.3, "seq2seq": 0.7})`` builds one. Outputs, decodings and losses are per head name;
``loss`` is the weighted sum of the heads' losses, each part returned as ``loss/<name>`` (what the trainer
logs as ``train_loss/<name>``). ``head_targets={"topic": {"labels": "topic_labels"}}`` lets a head read its
own target keys: that head sees ``batch["labels"]`` = ``batch["topic_labels"]``. ``config.json`` lists
the heads under ``heads`` (plus ``head_weights``, ``head_targets``) and the weights are ``heads.<name>.*``.

Several data sets at once (one task per head, :mod:`tasks.engine.multitask`): a batch ``{"parts": {head
name: that head's own batch}}`` runs the backbone on each part's inputs and only that part's head on
them; ``loss`` sums the weighted losses of the parts present, and gives ``loss/<name>`` None for a head
whose part the batch lacks (measured nothing: the trainer leaves it out of the step's mean).
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.model import ZooModel, as_batch, create_head, spec_of
from zoo.tokenizer import BaseTokenizer

HeadSpec = str | Mapping[str, Any] | nn.Module     # a registry name, {"name", "args"}, or a built head
PARTS = "parts"     # batch key of per-head batches (several data sets at once)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*$")


def head_pairs(heads: Mapping[str, HeadSpec] | Iterable[tuple[str, HeadSpec]]) -> list[tuple[str, HeadSpec]]:
    """``heads`` as (name, spec) pairs; empty, duplicate or malformed names are refused."""
    pairs = list(heads.items()) if isinstance(heads, Mapping) else list(heads)
    if not pairs:
        raise ZooError("heads= is empty; give at least one {name: head}")
    seen: set[str] = set()
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ZooError(f"heads=: expected {{name: head}} or (name, head) pairs, got {pair!r}")
        name = pair[0]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ZooError(f"heads=: head name {name!r} must be letters, digits, '_' or '-' (no dots), "
                           f"starting with a letter or '_'")
        if name in seen:
            raise ZooError(f"heads=: the name {name!r} is given twice; name each head once")
        seen.add(name)
    return pairs


def build_head(name: str, spec: HeadSpec, backbone: nn.Module) -> nn.Module:
    """Head ``name`` of a multi-head model from its spec, refused in one line naming it."""
    try:
        if isinstance(spec, nn.Module):
            spec.check_backbone(backbone)
            return spec
        if isinstance(spec, str):
            return create_head(spec, backbone)
        if isinstance(spec, Mapping) and isinstance(spec.get("name"), str) and set(spec) <= {"name", "args"}:
            return create_head(spec["name"], backbone, **dict(spec.get("args") or {}))
    except ZooError as err:
        raise ZooError(f"head {name!r}: {err}") from None
    except KeyError as err:     # an unknown registry name
        raise ZooError(f"head {name!r}: {err.args[0]}") from None
    except (TypeError, ValueError) as err:     # arguments the head's factory refuses
        raise ZooError(f"head {name!r}: {' '.join(str(err).split())}") from None
    raise ZooError(f"head {name!r}: expected a head registry name, {{'name': ..., 'args': {{...}}}} or a built "
                   f"head module, got {spec!r}")


def _checked_weights(names: list[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    """Every head's loss weight (1.0 unless given); unknown names and bad numbers refused."""
    weights = dict(weights or {})
    _known(names, weights, "head_weights")
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ZooError(f"head_weights[{name!r}] is {value!r}; expected a finite number >= 0")
    checked = {name: float(weights.get(name, 1.0)) for name in names}
    if not any(checked.values()):
        raise ZooError("head_weights are all 0: no head would learn; give at least one a positive weight")
    return checked


def _checked_targets(names: list[str], targets: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[str, str]]:
    """Per head, {key the head reads: batch key it is read from}; unknown head names refused."""
    targets = dict(targets or {})
    _known(names, targets, "head_targets")
    for name, keys in targets.items():
        if not isinstance(keys, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
            raise ZooError(f"head_targets[{name!r}] is {keys!r}; expected {{key the head reads: batch key}}")
    return {name: dict(keys) for name, keys in targets.items()}


def _known(names: list[str], given: Mapping[str, Any], field: str) -> None:
    unknown = [name for name in given if name not in names]
    if unknown:
        raise ZooError(f"{field} names unknown head {unknown[0]!r}; the heads are {', '.join(names)}")


class MultiHeadModel(ZooModel):
    """A backbone and named heads: ``forward(batch)`` -> ``{head name: that head's outputs}``.

    ``save``, ``load_weights``, ``set_grad_checkpointing``, ``freeze``, LoRA and the trainer work as for one
    head. What needs one head (generation, distillation, a task's export) takes ``model.single_head(name)``,
    a single-head view sharing the modules.
    """

    def __init__(self, backbone: nn.Module, heads: Mapping[str, HeadSpec] | Iterable[tuple[str, HeadSpec]],
                 head_weights: Mapping[str, float] | None = None,
                 head_targets: Mapping[str, Mapping[str, str]] | None = None,
                 tokenizer: BaseTokenizer | None = None, preprocessing: dict | None = None,
                 task: str | None = None) -> None:
        super().__init__(backbone, None, tokenizer, preprocessing, task)
        pairs = head_pairs(heads)
        names = [name for name, _ in pairs]
        weights, targets = _checked_weights(names, head_weights), _checked_targets(names, head_targets)
        built = [(name, build_head(name, spec, backbone)) for name, spec in pairs]
        owners: dict[int, str] = {}
        for name, head in built:
            if id(head) in owners:
                raise ZooError(f"heads {owners[id(head)]!r} and {name!r} are the same module; build one head each")
            owners[id(head)] = name
        self.heads = nn.ModuleDict(dict(built))
        self.head_weights, self.head_targets = weights, targets

    @property
    def head(self) -> nn.Module:
        raise ZooError(f"this model has several heads ({', '.join(self.heads)}); pick one with "
                       f"model.single_head(name) (or model.heads[name])")

    def head_modules(self) -> dict[str, nn.Module]:
        return {f"heads.{name}": head for name, head in self.heads.items()}

    def head_batch(self, name: str, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` as head ``name`` reads it: its ``head_targets`` keys filled from their batch keys."""
        renamed = {key: batch[source] for key, source in self.head_targets.get(name, {}).items() if source in batch}
        return {**batch, **renamed} if renamed else batch

    def forward(self, batch: dict[str, Any] | torch.Tensor,
                mask: torch.Tensor | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """The backbone once, then every head on its Features: ``{head name: outputs}``; for a batch of
        ``parts``, the backbone on each part and that part's head: ``{part's head name: outputs}``."""
        if isinstance(batch, dict) and PARTS in batch:
            return {name: self.heads[self._head_name(name)](self.backbone(part["inputs"], part.get("mask")),
                                                            self.head_batch(name, part))
                    for name, part in batch[PARTS].items()}
        batch = as_batch(batch, mask)
        features = self.backbone(batch["inputs"], batch.get("mask"))
        return {name: head(features, self.head_batch(name, batch)) for name, head in self.heads.items()}

    def loss(self, outputs: dict[str, dict[str, torch.Tensor]],
             batch: dict[str, Any]) -> dict[str, torch.Tensor | None]:
        """``loss`` = sum of ``head_weights[name] * loss/<name>``; each head's own parts as ``<name>/<part>``.

        No ``weight`` key: the heads' losses are means over different units (tokens, rows), so the
        trainer weighs accumulated micro-batches by their rows. A batch of ``parts`` scores each head on
        its own part; a head without one has ``loss/<name>`` None.
        """
        parts = batch.get(PARTS) if isinstance(batch, dict) else None
        losses: dict[str, torch.Tensor | None] = {}
        total: torch.Tensor | float = 0.0
        for name, head in self.heads.items():
            if parts is not None and name not in parts:
                losses[f"loss/{name}"] = None
                continue
            if name not in outputs:
                raise ZooError(f"loss: no outputs of head {name!r} (outputs has {', '.join(outputs) or 'nothing'})")
            scored = head.loss(outputs[name], self.head_batch(name, batch if parts is None else parts[name]))
            losses[f"loss/{name}"] = scored["loss"]
            losses.update({f"{name}/{key}": value for key, value in scored.items() if key not in ("loss", "weight")})
            total = total + self.head_weights[name] * scored["loss"]
        return {"loss": total, **losses}

    def decode(self, outputs: dict[str, dict[str, torch.Tensor]], **options: Any) -> dict[str, list[Any]]:
        """Every head's readable results: ``{head name: one result per row}``."""
        return {name: head.decode(outputs[name], **options) for name, head in self.heads.items() if name in outputs}

    def part(self, name: str) -> nn.Module:
        """``"backbone"`` or a head by name (what :meth:`freeze` addresses)."""
        if name == "backbone":
            return self.backbone
        return self.heads[self._head_name(name)]

    def _head_name(self, name: str) -> str:
        if name not in self.heads:
            raise ZooError(f"unknown head {name!r}; this model's heads are {', '.join(self.heads)}")
        return name

    def single_head(self, name: str) -> ZooModel:
        """A single-head ZooModel of the backbone and head ``name``, sharing their modules (training the
        view trains this model); what generation and ``zoo export`` take."""
        view = ZooModel(self.backbone, self.heads[self._head_name(name)], self.tokenizer, self.preprocessing,
                        self.task)
        view.lora, view.quantization, view.training = self.lora, self.quantization, self.training
        return view

    def reset_head(self, name: str, head: HeadSpec | None = None, **args: Any) -> None:
        """Replace head ``name`` by a new one: ``head`` (a registry name, a spec or a module), or by default
        the same registry head afresh, its stored arguments updated by ``args``."""
        old = self.heads[self._head_name(name)]
        if head is None:
            spec = getattr(old, "zoo_spec", None)
            if spec is None:
                raise ZooError(f"reset_head({name!r}): the head was not built by name; pass the new head")
            head = {"name": spec["name"], "args": {**spec["args"], **args}}
        elif args:
            if not isinstance(head, str):
                raise ZooError("reset_head: head arguments apply only when the head is given by name")
            head = {"name": head, "args": args}
        self.heads[name] = build_head(name, head, self.backbone)

    def head_config(self) -> dict[str, Any]:
        """The ``config.json`` fields naming the heads: ``heads``, ``head_weights``, ``head_targets``."""
        specs = {name: spec_of(head, f"head {name!r}", "head") for name, head in self.heads.items()}
        return {"heads": specs, "head_weights": self.head_weights, "head_targets": self.head_targets}
