"""LoRA on any backbone through ``peft``: add, save alone, re-apply, merge.

Adapters are injected into ``model.backbone`` with ``peft.inject_adapter_in_model``: each
target ``nn.Linear`` becomes a peft LoRA layer in place, so the ZooModel, its head, the trainer,
evaluation and KV-cache generation run unchanged. Our fused ``qkv`` projection is one plain
Linear target (one A/B pair over the fused output). The backbone's base weights are frozen;
the head's own parameters train (a head tied to a backbone tensor, the LM head to the token
embedding, keeps that tensor frozen with the backbone).

Default targets: every ``nn.Linear`` inside the backbone's repeated layers (a module path with
a numeric index: ``stack.blocks.3.attn.qkv``, ``encoder.layer.0.intermediate.dense``), which are
the attention projections and MLP linears, except a Conformer convolution module's pointwise
layers. ``nn.MultiheadAttention`` reads its ``out_proj`` weight directly, so its children are
never targets.

On disk (no pickle): ``config.json`` records the spec under ``lora`` and ``model.safetensors``
holds base + adapter tensors (``zoo.load`` re-injects before loading); beside them
``adapter.safetensors`` holds only the adapters and the head (:data:`ADAPTER_CONFIG` says how
to re-apply them on the base model, :func:`apply_adapters`). :func:`merge_lora` folds the
adapters into the base weights and leaves a plain model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from zoo.checkpoint import check_weights, read_weights
from zoo.errors import ZooError

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_ADAPTER = "default"        # peft's adapter name: parameters are ``...lora_A.default.weight``


@dataclass(frozen=True)
class LoraSpec:
    """What was injected: ``rank``, scaling ``alpha / rank``, dropout before A, full target names
    (module paths inside the backbone)."""

    rank: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]

    @classmethod
    def from_config(cls, value: Any, where: str) -> LoraSpec:
        """The spec stored as JSON at ``where`` (a file and field, for messages), checked."""
        fields = {"rank": int, "alpha": (int, float), "dropout": (int, float), "targets": list}
        if not isinstance(value, dict) or set(value) != set(fields):
            raise ZooError(f"{where}: expected an object with {', '.join(fields)}; re-save the model")
        for name, kind in fields.items():
            if isinstance(value[name], bool) or not isinstance(value[name], kind):
                raise ZooError(f"{where}: field {name!r} is {value[name]!r}; re-save the model")
        if not all(isinstance(t, str) for t in value["targets"]):
            raise ZooError(f"{where}: field 'targets' must list module names; re-save the model")
        return cls(value["rank"], float(value["alpha"]), float(value["dropout"]), tuple(value["targets"]))

    def to_config(self) -> dict[str, Any]:
        """JSON-able form (what ``config.json`` stores under ``lora``)."""
        return {**asdict(self), "targets": list(self.targets)}


def _eligible(backbone: nn.Module) -> dict[str, nn.Linear]:
    """Every Linear of ``backbone`` a LoRA layer can wrap (not the children of MultiheadAttention)."""
    inside_mha = {f"{name}.{child}" if name else child for name, module in backbone.named_modules()
                  if isinstance(module, nn.MultiheadAttention) for child, _ in module.named_children()}
    return {name: module for name, module in backbone.named_modules()
            if isinstance(module, nn.Linear) and name not in inside_mha}


def _short(name: str) -> str:
    """The name a user passes for a target: the last path part (two when the last is an index)."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


def target_names(backbone: nn.Module) -> list[str]:
    """The names ``--lora-targets`` accepts for ``backbone`` (sorted)."""
    return sorted({_short(n) for n in _eligible(backbone)})


def default_targets(backbone: nn.Module) -> list[str]:
    """Full names of the attention and MLP linears of the backbone's repeated layers (module docstring)."""
    chosen = []
    for name in _eligible(backbone):
        parts = name.split(".")
        if any(p.isdigit() for p in parts[:-1]) and not any("conv" in p for p in parts[:-1]):
            chosen.append(name)
    return chosen


def resolve_targets(backbone: nn.Module, names: list[str] | None) -> list[str]:
    """Full module names of the targets: ``names`` match a Linear's path or its end (``qkv``,
    ``attn.proj``); None gives :func:`default_targets`. An unknown name raises ZooError listing the valid ones."""
    eligible = list(_eligible(backbone))
    if names is None:
        chosen = default_targets(backbone)
        if not chosen:
            raise ZooError(f"this backbone has no linear layer inside repeated layers; name the LoRA targets "
                           f"(valid targets: {', '.join(target_names(backbone)) or 'none'})")
        return chosen
    chosen = []
    for wanted in names:
        hits = [n for n in eligible if n == wanted or n.endswith(f".{wanted}")]
        if not hits:
            raise ZooError(f"LoRA target {wanted!r} is no linear layer of this backbone; valid targets: "
                           f"{', '.join(target_names(backbone)) or 'none'}")
        chosen += [n for n in hits if n not in chosen]
    return [n for n in eligible if n in chosen]   # in the model's order


def inject(backbone: nn.Module, spec: LoraSpec) -> None:
    """Replace ``spec.targets`` of ``backbone`` by peft LoRA layers (B starts at zero: outputs unchanged)."""
    from peft import LoraConfig, inject_adapter_in_model

    missing = [t for t in spec.targets if t not in _eligible(backbone)]
    if missing:
        raise ZooError(f"LoRA target {missing[0]!r} is no linear layer of this backbone; valid targets: "
                       f"{', '.join(target_names(backbone))}")
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=list(spec.targets), bias="none")
    inject_adapter_in_model(config, backbone, adapter_name=_ADAPTER)


def add_lora(model: nn.Module, rank: int, alpha: float | None = None, targets: list[str] | None = None,
             dropout: float = 0.0) -> LoraSpec:
    """Inject LoRA of ``rank`` into ``model.backbone`` (a ZooModel) and freeze its base weights.

    ``alpha`` defaults to ``rank`` (scaling 1); ``targets`` are names as :func:`resolve_targets`
    takes them. Afterwards only the adapters and the head's own parameters require grad.

    >>> spec = add_lora(model, rank=4)            # attention and MLP linears of the backbone
    >>> spec.targets[:2]
    ('stack.blocks.0.attn.qkv', 'stack.blocks.0.attn.proj')
    """
    if getattr(model, "lora", None) is not None:
        raise ZooError("this model already has LoRA adapters; merge them first (zoo.merge_lora)")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ZooError(f"LoRA rank {rank!r}: expected a whole number >= 1")
    if not 0.0 <= dropout < 1.0:
        raise ZooError(f"LoRA dropout {dropout!r}: expected a probability in [0, 1)")
    if alpha is not None and not alpha > 0:
        raise ZooError(f"LoRA alpha {alpha!r}: expected a number > 0")
    spec = LoraSpec(rank, float(rank if alpha is None else alpha), float(dropout),
                    tuple(resolve_targets(model.backbone, targets)))
    inject(model.backbone, spec)
    model.lora = spec
    mark_trainable(model)
    return spec


def mark_trainable(model: nn.Module) -> None:
    """Adapters and the heads' own parameters train; every other backbone tensor is frozen."""
    for head in model.head_modules().values():
        head.requires_grad_(True)
    for name, param in model.backbone.named_parameters():   # after the head: a tied tensor stays frozen
        param.requires_grad_(".lora_" in f".{name}")


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters of ``model``; a tied tensor counts once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What fine-tuning changed: the backbone's LoRA tensors and the heads' own tensors (model names; a
    tensor tied inside a head, like the seq2seq output projection and embedding, once)."""
    seen = {t.data_ptr() for t in model.backbone.state_dict().values()}
    state = {f"backbone.{n}": t for n, t in model.backbone.state_dict().items() if ".lora_" in f".{n}"}
    for prefix, head in model.head_modules().items():
        for name, tensor in head.state_dict().items():
            if tensor.data_ptr() not in seen:
                state[f"{prefix}.{name}"] = tensor
                seen.add(tensor.data_ptr())
    return state


def save_adapters(model: nn.Module, directory: str | Path) -> None:
    """Write :data:`ADAPTER_WEIGHTS` (adapters + head) and :data:`ADAPTER_CONFIG` (the spec) into ``directory``."""
    directory = Path(directory)
    save_file({k: v.detach().cpu().contiguous() for k, v in adapter_state(model).items()},
              str(directory / ADAPTER_WEIGHTS))
    config = {"format_version": 1, "lora": model.lora.to_config(), "backbone": model.backbone.zoo_spec["name"]}
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))


def apply_adapters(model: nn.Module, directory: str | Path) -> LoraSpec:
    """Inject the adapters saved in ``directory`` into ``model`` (its base: the backbone they were
    trained on, a head of the same shapes) and load them with the saved head."""
    directory = Path(directory)
    config_path = directory / ADAPTER_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: {directory} holds no saved LoRA adapters")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ZooError(f"{config_path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ZooError(f"{config_path}: expected a JSON object at the top; re-save the adapters")
    spec = LoraSpec.from_config(config.get("lora"), f"{config_path}: field 'lora'")
    if getattr(model, "lora", None) is not None:
        raise ZooError("this model already has LoRA adapters; apply saved adapters to the base model")
    stored = read_weights(directory / ADAPTER_WEIGHTS)
    inject(model.backbone, spec)
    model.lora = spec
    expected = adapter_state(model)
    check_weights(directory / ADAPTER_WEIGHTS, stored, expected)
    absent = sorted(set(expected) - set(stored)) + sorted(set(stored) - set(expected))
    if absent:
        raise ZooError(f"{directory / ADAPTER_WEIGHTS}: tensor {absent[0]!r} is missing or not of this model; "
                       f"these adapters were trained on another backbone or head")
    with torch.no_grad():
        for name, tensor in expected.items():
            tensor.copy_(stored[name])
    mark_trainable(model)
    return spec


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights, in place: a plain model with no LoRA layer left
    (``save`` then writes an ordinary folder, ready for export). Returns ``model``."""
    from peft.tuners.lora import LoraLayer

    if getattr(model, "lora", None) is None:
        raise ZooError("this model has no LoRA adapters to merge")
    layers = [(name, module) for name, module in model.backbone.named_modules() if isinstance(module, LoraLayer)]
    for name, module in layers:
        module.merge(safe_merge=True)
        parent, _, child = name.rpartition(".")
        setattr(model.backbone.get_submodule(parent), child, module.get_base_layer())
    if hasattr(model.backbone, "peft_config"):     # peft's record of the adapters just folded in
        del model.backbone.peft_config
    model.lora = None
    model.requires_grad_(True)
    return model
