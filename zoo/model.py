"""ZooModel = backbone + head; ``create_model``, ``save`` and pickle-free ``load``."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from torch import nn

from zoo.checkpoint import CONFIG, FORMAT_VERSION, WEIGHTS, read_config, read_weights
from zoo.registry import BACKBONES, HEADS
from zoo.tokenizer import TOKENIZER_FILE, Tokenizer


def create_backbone(name: str, **args: Any) -> nn.Module:
    """A registered backbone (or ``timm/<name>``, ``torchaudio/<name>``), remembering how it was made.

    ``padding_sensitive`` is set on every backbone: True when padding a batch changes the outputs
    on real positions (callers then batch inputs of one size). A backbone that does not say so
    itself takes its registry metadata, and is assumed sensitive when that is silent too.
    """
    module = BACKBONES.create(name, **args)
    module.zoo_spec = {"name": name, "args": args}
    if not hasattr(module, "padding_sensitive"):
        module.padding_sensitive = bool(BACKBONES.meta(name).get("padding_sensitive", True))
    return module


def create_head(name: str, backbone: nn.Module, **args: Any) -> nn.Module:
    """A registered head built for ``backbone`` (heads read its dim, modality and embeddings)."""
    module = HEADS.create(name, backbone=backbone, **args)
    module.zoo_spec = {"name": name, "args": args}
    return module


@dataclass
class LoadReport:
    """What ``load_weights`` did: names loaded, skipped (shape differs) and missing from the file."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)} (shape differs), {len(self.missing)} missing"


class ZooModel(nn.Module):
    """A backbone and a head composed: ``forward(batch)`` -> head outputs.

    ``config`` keeps what ``zoo.load`` needs to rebuild the model (registry names and
    arguments, preprocessing, the task); ``tokenizer`` is saved beside the weights.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, tokenizer: Tokenizer | None = None,
                 preprocessing: dict | None = None, task: str | None = None) -> None:
        super().__init__()
        head.check_backbone(backbone)
        self.backbone, self.head = backbone, head
        self.tokenizer = tokenizer
        self.preprocessing = dict(preprocessing or {})
        self.task = task

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        features = self.backbone(batch["inputs"], batch.get("mask"))
        return self.head(features, batch)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.head.loss(outputs, batch)

    def decode(self, outputs: dict[str, torch.Tensor], **options: Any) -> list[Any]:
        return self.head.decode(outputs, **options)

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], **options: Any) -> list[list[int]]:
        """New token ids per row through the head's step protocol (see ``zoo.generation``)."""
        from zoo.generation import generate

        return generate(self, batch, **options)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute block activations in the backward pass (less memory, more compute)."""
        from zoo.layers.stack import Stack

        for module in self.modules():
            if isinstance(module, Stack):
                module.grad_checkpointing = enabled

    def reset_head(self, head: str | nn.Module, **args: Any) -> None:
        """Replace the head (a name from the registry, or a built module) keeping the backbone."""
        new = create_head(head, self.backbone, **args) if isinstance(head, str) else head
        new.check_backbone(self.backbone)
        self.head = new

    @property
    def config(self) -> dict[str, Any]:
        """The JSON-able description ``zoo.load`` rebuilds from."""
        parts = {}
        for part in ("backbone", "head"):
            spec = getattr(getattr(self, part), "zoo_spec", None)
            if spec is None:
                raise ValueError(f"this model's {part} was not built by name through zoo; "
                                 f"use zoo.create_{part}(...) so it can be saved and rebuilt")
            parts[part] = spec
        return {"format_version": FORMAT_VERSION, **parts, "task": self.task,
                "preprocessing": self.preprocessing,
                "tokenizer": TOKENIZER_FILE if self.tokenizer is not None else None}

    def save(self, directory: str | Path) -> None:
        """Write ``config.json``, ``model.safetensors`` (tied weights once) and the tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config
        save_model(self, str(directory / WEIGHTS))
        if self.tokenizer is not None:
            self.tokenizer.save(directory / TOKENIZER_FILE)
        (directory / CONFIG).write_text(json.dumps(config, indent=2, default=list))

    def load_weights(self, directory: str | Path, prefix: str = "") -> LoadReport:
        """Copy every tensor of a checkpoint whose name starts with ``prefix`` and whose shape
        matches; report the rest instead of failing or loading garbage."""
        stored = read_weights(directory)
        own = self.state_dict()
        report = LoadReport()
        with torch.no_grad():
            for name, tensor in own.items():
                if not name.startswith(prefix):
                    continue
                if name not in stored:
                    report.missing.append(name)
                elif stored[name].shape != tensor.shape:
                    report.skipped.append(name)
                else:
                    tensor.copy_(stored[name])
                    report.loaded.append(name)
        return report

    def load_backbone_from(self, directory: str | Path) -> LoadReport:
        """Transfer learning: load only the backbone of another checkpoint."""
        return self.load_weights(directory, prefix="backbone.")


def create_model(backbone: str | nn.Module = "vit_tiny", head: str | nn.Module = "classification", *,
                 backbone_args: dict | None = None, tokenizer: Tokenizer | None = None,
                 preprocessing: dict | None = None, task: str | None = None, **head_args: Any) -> ZooModel:
    """Compose a model from registry names or built modules.

    >>> zoo.create_model(backbone="vit_tiny", head="classification",
    ...                  backbone_args={"img_size": 28, "patch_size": 4}, num_classes=10)
    """
    if isinstance(backbone, str):
        backbone = create_backbone(backbone, **(backbone_args or {}))
    elif backbone_args:
        raise ValueError("backbone_args apply only when the backbone is given by name")
    if isinstance(head, str):
        head = create_head(head, backbone, **head_args)
    elif head_args:
        raise ValueError("head arguments apply only when the head is given by name")
    return ZooModel(backbone, head, tokenizer, preprocessing, task)


def load(directory: str | Path, map_location: str | torch.device = "cpu") -> ZooModel:
    """Rebuild a saved model from ``config.json`` + ``model.safetensors`` (no pickle anywhere)."""
    directory = Path(directory)
    config = read_config(directory)
    tokenizer = Tokenizer.load(directory / config["tokenizer"]) if config.get("tokenizer") else None
    model = create_model(config["backbone"]["name"], config["head"]["name"],
                         backbone_args=config["backbone"]["args"], tokenizer=tokenizer,
                         preprocessing=config.get("preprocessing"), task=config.get("task"),
                         **config["head"]["args"])
    stored = read_weights(directory)
    missing, unexpected = model.load_state_dict(stored, strict=False)
    missing = _untied(model, missing, stored)
    if missing or unexpected:
        raise ValueError(f"{directory / WEIGHTS} does not match {directory / CONFIG}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(map_location).eval()


def _untied(model: nn.Module, missing: list[str], stored: dict[str, torch.Tensor]) -> list[str]:
    """Drop from ``missing`` the tied parameters (same storage as a stored name): safetensors
    writes a shared tensor once, and loading that name fills every alias."""
    state = model.state_dict(keep_vars=True)
    stored_ptrs = {state[name].data_ptr() for name in stored if name in state}
    return [name for name in missing if state[name].data_ptr() not in stored_ptrs]
