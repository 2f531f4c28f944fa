"""ZooModel = backbone + head (several heads: :mod:`zoo.multihead`); ``create_model``, ``save`` and pickle-free ``load``."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file, save_model
from torch import nn

from zoo.arguments import check_args, fields_of
from zoo.checkpoint import (CONFIG, FORMAT_VERSION, WEIGHTS, check_weights, read_config, read_weights,
                            resolve_checkpoint)
from zoo.errors import ZooError
from zoo.registry import BACKBONES, HEADS
from zoo.tokenizer import BaseTokenizer, stored_tokenizer


def create_backbone(name: str, **args: Any) -> nn.Module:
    """A registered backbone (or ``timm/<name>``, ``torchaudio/<name>``), remembering how it was made.

    ``padding_sensitive`` is set on every backbone: True when padding a batch changes the outputs
    on real positions (callers then batch inputs of one size). A backbone that does not say so
    itself takes its registry metadata, and is assumed sensitive when that is silent too.
    """
    check_args("backbone", name, args, fields_of(BACKBONES.get(name), BACKBONES.meta(name)))
    module = BACKBONES.create(name, **args)
    module.zoo_spec = {"name": name, "args": args}
    if not hasattr(module, "padding_sensitive"):
        module.padding_sensitive = bool(BACKBONES.meta(name).get("padding_sensitive", True))
    return module


def create_head(name: str, backbone: nn.Module, **args: Any) -> nn.Module:
    """A registered head built for ``backbone`` (heads read its dim, modality and embeddings)."""
    check_args("head", name, args, fields_of(HEADS.get(name), HEADS.meta(name), skip=("backbone",)))
    module = HEADS.create(name, backbone=backbone, **args)
    module.zoo_spec = {"name": name, "args": args}
    return module


@dataclass
class LoadReport:
    """What a weight load did: names loaded, skipped and missing from the file (left new).

    ``load_weights`` skips a tensor whose shape differs; a pretrained conversion skips the
    file's tensors the model has no place for (``skip_reason`` says which).
    """

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skip_reason: str = "shape differs"

    def __str__(self) -> str:
        return (f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)} ({self.skip_reason}), "
                f"{len(self.missing)} missing")


def as_batch(batch: dict[str, Any] | torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, Any]:
    """A batch dict: ``batch`` itself, or ``{"inputs": batch, "mask": mask}`` for a tensor (mask as bool)."""
    if isinstance(batch, dict):
        if mask is not None:
            raise ZooError("pass the mask inside the batch dict (batch['mask']), not beside it")
        return batch
    if not torch.is_tensor(batch):
        raise ZooError(f"expected a batch dict or an inputs tensor, got {type(batch).__name__}")
    return {"inputs": batch} if mask is None else {"inputs": batch, "mask": mask.bool()}


class ZooModel(nn.Module):
    """A backbone and a head composed: ``forward(batch)`` -> head outputs.

    ``config`` keeps what ``zoo.load`` needs to rebuild the model (registry names and
    arguments, preprocessing, the task); ``tokenizer`` is saved beside the weights.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module | None, tokenizer: BaseTokenizer | None = None,
                 preprocessing: dict | None = None, task: str | None = None) -> None:
        """``head`` None: a subclass attaches its heads itself (:class:`zoo.multihead.MultiHeadModel`)."""
        super().__init__()
        self.backbone = backbone
        if head is not None:
            head.check_backbone(backbone)
            self.head = head
        self.tokenizer = tokenizer
        self.preprocessing = dict(preprocessing or {})
        self.task = task
        self.lora = None      # a zoo.lora.LoraSpec once adapters are injected (zoo.lora.add_lora)
        self.quantization = None      # a zoo.quantized.QuantSpec once int8 (zoo.quantize)

    def forward(self, batch: dict[str, Any] | torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Head outputs of a batch dict (docs/design.md), or of a plain ``inputs`` tensor (token ids
        (B, T), images (B, C, H, W), waveforms or features) with an optional ``mask`` (B, T)."""
        batch = as_batch(batch, mask)
        features = self.backbone(batch["inputs"], batch.get("mask"))
        return self.head(features, batch)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.head.loss(outputs, batch)

    def decode(self, outputs: dict[str, torch.Tensor], **options: Any) -> list[Any]:
        return self.head.decode(outputs, **options)

    @torch.no_grad()
    def generate(self, batch: dict[str, Any] | torch.Tensor | None = None, **options: Any) -> list[list[int]]:
        """New token ids per row through the head's step protocol (see ``zoo.generation``).

        ``batch`` is a batch dict or an ``inputs`` tensor; the transformers spelling works too:
        ``generate(input_ids=ids, attention_mask=mask, max_new_tokens=..., num_beams=...,
        do_sample=True, temperature=..., top_k=..., top_p=...)`` (prompts left-padded).
        """
        from zoo.generation import generate, transformers_options

        input_ids, attention_mask = options.pop("input_ids", None), options.pop("attention_mask", None)
        if (batch is None) == (input_ids is None):
            raise ZooError("generate takes a batch (dict or inputs tensor) or input_ids=..., exactly one of them")
        return generate(self, as_batch(input_ids if batch is None else batch, attention_mask),
                        **transformers_options(options))

    def generate_text(self, texts: list[str], **options: Any) -> list[str]:
        """Texts in, texts out: the continuation of each prompt (a decoder with the ``lm`` head) or the
        translation of each source (an encoder with the ``seq2seq`` head), what ``zoo predict`` prints for them.

        ``options``: ``max_new_tokens``, ``beams``/``num_beams``, ``do_sample``, ``temperature``, ``top_k``,
        ``top_p``, ``seed``... (:func:`zoo.texts.generate_text`).
        """
        from zoo.texts import generate_text

        return generate_text(self, texts, **options)

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

    def part(self, name: str) -> nn.Module:
        """``"backbone"`` or ``"head"``: the module :meth:`freeze` addresses."""
        if name not in ("backbone", "head"):
            raise ZooError(f"unknown part {name!r}; a single-head model has 'backbone' and 'head'")
        return getattr(self, name)

    def head_modules(self) -> dict[str, nn.Module]:
        """Every head by its state-dict prefix: ``{"head": head}`` (several heads: ``{"heads.<name>": head}``)."""
        return {"head": self.head}

    def freeze(self, part: str, frozen: bool = True) -> None:
        """Stop (``frozen``) or restart training ``part``: ``"backbone"``, ``"head"``, or a head's name."""
        self.part(part).requires_grad_(not frozen)

    def head_config(self) -> dict[str, Any]:
        """The ``config.json`` field naming the head: ``{"head": {"name", "args"}}``."""
        return {"head": spec_of(self.head, "head")}

    @property
    def config(self) -> dict[str, Any]:
        """The JSON-able description ``zoo.load`` rebuilds from."""
        parts = {"backbone": spec_of(self.backbone, "backbone"), **self.head_config()}
        config = {"format_version": FORMAT_VERSION, **parts, "task": self.task,
                  "preprocessing": self.preprocessing,
                  "tokenizer": self.tokenizer.file if self.tokenizer is not None else None,
                  "tokenizer_kind": self.tokenizer.kind if self.tokenizer is not None else None}
        if self.lora is not None:
            config["lora"] = self.lora.to_config()
        if self.quantization is not None:
            config["quantization"] = self.quantization.to_config()
        return config

    def save(self, directory: str | Path, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Write ``config.json``, ``model.safetensors`` (tied weights once) and the tokenizer;
        with LoRA also the adapters alone (:func:`zoo.lora.save_adapters`).

        ``weights``: the tensors to write instead of this model's own, by state-dict name (a
        sharded model's consolidated state); a tied alias among them is written once.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config
        if weights is None:
            save_model(self, str(directory / WEIGHTS))
        else:
            if self.lora is not None:
                raise ValueError("a LoRA model saves its adapters from its own weights; call save() without weights")
            aliases = ({name for name, _ in self.named_parameters(remove_duplicate=False)}
                       - {name for name, _ in self.named_parameters()})
            save_file({name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()
                       if name not in aliases}, str(directory / WEIGHTS))
        if self.tokenizer is not None:
            self.tokenizer.save(directory / self.tokenizer.file)
        if self.lora is not None:
            from zoo.lora import save_adapters

            save_adapters(self, directory)
        (directory / CONFIG).write_text(json.dumps(config, indent=2, default=list))

    def load_weights(self, directory: str | Path, prefix: str = "") -> LoadReport:
        """Copy every tensor of a checkpoint whose name starts with ``prefix`` and whose shape
        matches; report the rest instead of failing or loading garbage. A LoRA checkpoint gives
        its merged weights (the plain names of this model)."""
        stored = _plain_weights(Path(directory))
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


def spec_of(module: nn.Module, part: str, kind: str | None = None) -> dict[str, Any]:
    """The registry name and arguments ``module`` (the model's ``part``, a ``kind`` of the registry)
    was built from (``zoo_spec``), for ``config.json``."""
    spec = getattr(module, "zoo_spec", None)
    if spec is None:
        raise ValueError(f"this model's {part} was not built by name through zoo; "
                         f"use zoo.create_{kind or part}(...) so it can be saved and rebuilt")
    return spec


def create_model(backbone: str | nn.Module | None = None, head: str | nn.Module = "classification", *,
                 pretrained: str | Path | None = None, backbone_args: dict | None = None,
                 tokenizer: BaseTokenizer | None = None, preprocessing: dict | None = None, task: str | None = None,
                 heads: Any = None, head_weights: dict[str, float] | None = None,
                 head_targets: dict[str, dict[str, str]] | None = None, **head_args: Any) -> ZooModel:
    """Compose a model from registry names or built modules (the backbone defaults to ``vit_tiny``).

    ``heads``: several heads on the one backbone, ``{name: registry name | {"name", "args"} | module}``
    (``head`` and head arguments are then not given); ``head_weights`` weigh their losses (default 1 each),
    ``head_targets`` rename the batch keys a head reads (:class:`zoo.multihead.MultiHeadModel`). A number
    ``heads=4`` stays what it always was: the attention-head count of a ``seq2seq`` or ``detr`` head.

    ``pretrained``: a catalog name (``zoo list weights``: ``"wordllama"``), a zoo model or run
    folder, a local transformers folder, or a timm/torchaudio safetensors file (see
    :mod:`zoo.pretrained`); it builds the backbone (and brings its tokenizer), and head tensors
    stored beside it (a classifier of the same shape) fill the new head. ``model.pretrained_report``
    then lists what was loaded, skipped and left new. ``backbone``/``backbone_args`` name the
    model of a bare weights file that does not say its architecture, or the text backbone a
    catalog token embedding goes into.

    >>> zoo.create_model(backbone="vit_tiny", head="classification",
    ...                  backbone_args={"img_size": 28, "patch_size": 4}, num_classes=10)
    """
    if isinstance(heads, int) and not isinstance(heads, bool):     # the seq2seq/detr head's own argument
        head_args["heads"], heads = heads, None
    source = None
    if pretrained is not None:
        from zoo.pretrained import load_pretrained

        if backbone is not None and not isinstance(backbone, str):
            raise ValueError("pretrained= builds the backbone; pass backbone= only as the name of the model "
                             "of a weights file")
        source = load_pretrained(pretrained, backbone, backbone_args)
        backbone, backbone_args = source.backbone, None
        preprocessing = {**source.preprocessing, **(preprocessing or {})}
        tokenizer = tokenizer if tokenizer is not None else source.tokenizer
    if backbone is None:
        backbone = "vit_tiny"
    if isinstance(backbone, str):
        backbone = create_backbone(backbone, **(backbone_args or {}))
    elif backbone_args:
        raise ValueError("backbone_args apply only when the backbone is given by name")
    if heads is not None:
        if source is not None:
            raise ZooError("pretrained= fills one head; build the multi-head model on a pretrained backbone "
                           "with zoo.create_model(pretrained=...) and heads added by reset_head, or load_backbone_from")
        return _multi_head(backbone, head, heads, head_weights, head_targets, tokenizer, preprocessing, task,
                           head_args)
    if head_weights is not None or head_targets is not None:
        raise ZooError("head_weights and head_targets name heads of heads={...}; a single-head model has neither")
    if isinstance(head, str):
        head = create_head(head, backbone, **head_args)
    elif head_args:
        raise ValueError("head arguments apply only when the head is given by name")
    model = ZooModel(backbone, head, tokenizer, preprocessing, task)
    if source is not None:
        model.pretrained_report = _fill_head(model, source.report, source.head_state)
    return model


def _multi_head(backbone: nn.Module, head: Any, heads: Any, weights: Any, targets: Any,
                tokenizer: BaseTokenizer | None, preprocessing: dict | None, task: str | None,
                head_args: dict[str, Any]) -> ZooModel:
    """``create_model(heads=...)``: refuses a ``head`` or head arguments beside ``heads``."""
    from zoo.multihead import MultiHeadModel

    if head != "classification" or head_args:
        raise ZooError("give either head= (with its arguments) or heads={name: head, ...}, not both; "
                       "put each head's arguments in its spec: {'name': ..., 'args': {...}}")
    return MultiHeadModel(backbone, heads, weights, targets, tokenizer, preprocessing, task)


def _fill_head(model: ZooModel, report: LoadReport, stored: dict[str, torch.Tensor]) -> LoadReport:
    """``report`` completed with the head: tensors of ``stored`` matching name and shape are loaded."""
    report = LoadReport(list(report.loaded), list(report.skipped), list(report.missing), report.skip_reason)
    own = model.head.state_dict()
    tied = {t.data_ptr() for t in model.backbone.state_dict().values()}   # the lm head shares the embedding
    with torch.no_grad():
        for name, tensor in own.items():
            if name in stored and stored[name].shape == tensor.shape:
                tensor.copy_(stored[name])
                report.loaded.append(f"head.{name}")
            elif tensor.data_ptr() not in tied:
                report.missing.append(f"head.{name}")
    report.skipped += [f"head.{n}" for n in stored if n not in own or stored[n].shape != own[n].shape]
    return report


def load(directory: str | Path, map_location: str | torch.device = "cpu") -> ZooModel:
    """Rebuild a saved model from ``config.json`` + ``model.safetensors`` (no pickle anywhere).

    ``directory`` is a model folder or a run folder (its ``best`` checkpoint, else ``last``).
    Every problem of the folder raises ZooError (FileNotFoundError for a missing file) naming
    the file and the field or tensor: nothing wrong is loaded silently.
    """
    directory = resolve_checkpoint(directory)
    config = read_config(directory)
    config_path = directory / CONFIG
    tokenizer = None
    if config.get("tokenizer"):
        try:
            tokenizer = stored_tokenizer(directory, config)
        except FileNotFoundError:
            raise
        except (ValueError, OSError) as err:
            raise ZooError(f"{directory / config['tokenizer']}: cannot be read as a tokenizer ({err})") from None
    backbone = _built(config_path, "backbone", lambda: create_backbone(config["backbone"]["name"],
                                                                        **config["backbone"].get("args", {})))
    if "heads" in config:
        from zoo.multihead import MultiHeadModel

        heads = {name: _built(config_path, f"heads.{name}", lambda spec=spec: create_head(
            spec["name"], backbone, **spec.get("args", {}))) for name, spec in config["heads"].items()}
        model = _built(config_path, "heads", lambda: MultiHeadModel(
            backbone, heads, config.get("head_weights"), config.get("head_targets"), tokenizer,
            config.get("preprocessing"), config.get("task")))
    else:
        head = _built(config_path, "head", lambda: create_head(config["head"]["name"], backbone,
                                                               **config["head"].get("args", {})))
        model = ZooModel(backbone, head, tokenizer, config.get("preprocessing"), config.get("task"))
    if config.get("lora") is not None:
        from zoo.lora import LoraSpec, inject, mark_trainable

        model.lora = LoraSpec.from_config(config["lora"], f"{config_path}: field 'lora'")
        _built(config_path, "lora", lambda: inject(backbone, model.lora))
        mark_trainable(model)
    if config.get("quantization") is not None:
        from zoo.quantized import QuantSpec, rebuild

        spec = QuantSpec.from_config(config["quantization"], f"{config_path}: field 'quantization'")
        _built(config_path, "quantization", lambda: rebuild(model, spec))
    weights_path = directory / WEIGHTS
    stored = read_weights(directory)
    check_weights(weights_path, stored, model.state_dict())
    missing, unexpected = model.load_state_dict(stored, strict=False)
    missing = _untied(model, missing, stored)
    if missing or unexpected:
        raise ZooError(f"{weights_path} does not match {config_path}: missing tensors {missing[:5]}, "
                       f"unexpected tensors {unexpected[:5]}; save the model again or fix the config")
    return model.to(map_location).eval()


def _plain_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of a model folder (or weights file); LoRA adapters merged into their base weights."""
    if directory.is_dir() and (directory / CONFIG).is_file() and read_config(directory).get("lora") is not None:
        from zoo.lora import merge_lora

        return merge_lora(load(directory)).state_dict()
    return read_weights(directory)


def _built(config_path: Path, part: str, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` the ``part`` of a saved model; its errors become one ZooError naming the field."""
    try:
        return build()
    except ZooError as err:
        raise ZooError(f"{config_path}: field '{part}': {err}") from None
    except KeyError as err:   # an unknown registry name
        raise ZooError(f"{config_path}: field '{part}.name': {err.args[0]}") from None
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        reason = " ".join(str(err).split())   # one line, whatever the library wrote
        raise ZooError(f"{config_path}: field '{part}.args' cannot build the {part}: {reason}") from None


def _untied(model: nn.Module, missing: list[str], stored: dict[str, torch.Tensor]) -> list[str]:
    """Drop from ``missing`` the tied parameters (same storage as a stored name): safetensors
    writes a shared tensor once, and loading that name fills every alias."""
    state = model.state_dict(keep_vars=True)
    stored_ptrs = {state[name].data_ptr() for name in stored if name in state}
    return [name for name in missing if state[name].data_ptr() not in stored_ptrs]
