"""Which pretrained source a path is, and the backbone (with its load report) built from it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from zoo.checkpoint import CONFIG, WEIGHTS, read_weights, resolve_checkpoint
from zoo.errors import ZooError
from zoo.model import LoadReport, create_backbone
from zoo.pretrained import catalog, gpt2, vit, wrapped
from zoo.pretrained.weights import UNUSED, fill, folder_weights, refuse_pickle
from zoo.tokenizer import HF_TOKENIZER_FILE, BaseTokenizer, HFTokenizer

CONVERTED = ("gpt2", "vit")
SUPPORTED = tuple(sorted((*CONVERTED, *wrapped.FAMILIES)))   # transformers model_type values
_HINT = "pass backbone='torchaudio/<factory>' (and its backbone_args) naming the model these weights belong to"


def weights_file_family(names: Iterable[str]) -> str | None:
    """``timm_vit`` or ``torchaudio_wav2vec2`` from a bare weights file's tensor names; None for neither."""
    names = set(names)
    if {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight"} <= names:
        return "timm_vit"
    if any(n.startswith("feature_extractor.conv_layers.") for n in names):
        return "torchaudio_wav2vec2"
    return None


@dataclass
class Pretrained:
    """A backbone built from pretrained weights, the head tensors found beside it, and the report.

    ``head_state`` holds head tensors in zoo's names (a classifier, a saved zoo head): they are
    loaded into the new head where names and shapes match. ``tokenizer``: a zoo folder's own, a
    transformers folder's ``tokenizer.json``, a catalog entry's.
    """

    backbone: nn.Module
    report: LoadReport
    head_state: dict[str, torch.Tensor] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    tokenizer: BaseTokenizer | None = None


def load_pretrained(source: str | Path, backbone: str | None = None, backbone_args: dict | None = None) -> Pretrained:
    """The backbone for pretrained ``source`` (a catalog name, a folder or a weights file); nothing is downloaded.

    ``backbone``/``backbone_args`` name the factory of a bare weights file that does not say
    its architecture (``torchaudio/wav2vec2_base``, or ``timm/vit_*`` for the number of heads),
    or the text backbone a catalog token embedding goes into (default ``text_encoder_tiny``, as
    wide as the table); a folder describes itself and refuses them.
    """
    if catalog.is_name(source):
        return _catalog_entry(str(source), backbone, dict(backbone_args or {}))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"pretrained weights {path} do not exist; pass a model folder or a .safetensors file")
    if path.is_file():
        return _weights_file(path, backbone, dict(backbone_args or {}))
    if backbone is not None or backbone_args:
        raise ZooError(f"{path} describes its own architecture; drop backbone= and backbone_args= "
                       f"(they name the model of a bare weights file)")
    if not (path / CONFIG).is_file():
        return _zoo_folder(resolve_checkpoint(path))
    config_path = path / CONFIG
    try:
        config = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"{config_path}: not a JSON config ({err})") from None
    if not isinstance(config, dict):
        raise ZooError(f"{config_path}: expected a JSON object at the top")
    if "format_version" in config:
        return _zoo_folder(path)
    if "model_type" in config:
        return _transformers_folder(path, config)
    if "architecture" in config:
        return _timm_folder(path, config)
    raise ZooError(f"{config_path}: neither a zoo, a transformers (model_type) nor a timm (architecture) config; "
                   f"supported transformers families: {', '.join(SUPPORTED)}")


def _catalog_entry(name: str, backbone: str | None, args: dict[str, Any]) -> Pretrained:
    """A text backbone as wide as catalog entry ``name``'s token embedding, the table copied in."""
    folder, card = catalog.resolve(name)
    arch = card["architecture"]
    if arch.get("kind") != catalog.TOKEN_EMBEDDING:
        raise ZooError(f"{folder / catalog.CARD}: architecture kind {arch.get('kind')!r} is not one zoo builds "
                       f"(kinds: {catalog.TOKEN_EMBEDDING})")
    path = folder / arch["file"]
    table = catalog.embedding_table(read_weights(path), path)
    shape = {"vocab_size": int(table.shape[0]), "dim": int(table.shape[1])}
    clash = {k: v for k, v in args.items() if k in shape and v != shape[k]}
    if clash:
        raise ZooError(f"backbone_args {clash} conflict with {name!r}, a table of {shape['vocab_size']} tokens x "
                       f"{shape['dim']}; drop them (the table sets the vocabulary and the width)")
    name_of_backbone = backbone or "text_encoder_tiny"
    module = create_backbone(name_of_backbone, **{**args, **shape})
    embed = getattr(module, "embed", None)
    if module.modality != "text" or not isinstance(embed, nn.Embedding):
        raise ZooError(f"backbone {name_of_backbone!r} has no token embedding 'embed' to take {name!r}'s table; "
                       f"pass a text backbone (text_encoder_*, text_decoder_*)")
    report = fill(module, {"embed.weight": table.float()}, path, {"embed.weight": arch.get("tensor", "")})
    tokenizer = HFTokenizer.load(folder / arch["tokenizer"])
    if tokenizer.vocab_size > shape["vocab_size"]:
        raise ZooError(f"{folder / arch['tokenizer']}: {tokenizer.vocab_size} tokens, more than the table's "
                       f"{shape['vocab_size']} rows")
    return Pretrained(module, _prefixed(report), tokenizer=tokenizer)


def _zoo_folder(folder: Path) -> Pretrained:
    from zoo.lora import merge_lora
    from zoo.model import load

    model = load(folder)
    if model.lora is not None:      # a LoRA run: its adapters folded into the backbone handed on
        merge_lora(model)
    names = [f"backbone.{n}" for n in model.backbone.state_dict()]
    report = LoadReport(loaded=names, skipped=[], skip_reason=UNUSED)
    return Pretrained(model.backbone, report, model.head.state_dict(), dict(model.preprocessing), model.tokenizer)


def _transformers_folder(folder: Path, config: dict[str, Any]) -> Pretrained:
    family = config["model_type"]
    if family not in SUPPORTED:
        raise ZooError(f"{folder / CONFIG}: model_type {family!r} is not supported; supported families: "
                       f"{', '.join(SUPPORTED)}")
    if family not in CONVERTED:
        if not (folder / WEIGHTS).is_file():
            folder_weights(folder)   # raises: no safetensors (names a pickle and its conversion)
        module, report = wrapped.load(folder, config)
        rate = {"sample_rate": 16000} if module.modality == "audio" else {}
        return Pretrained(module, _prefixed(report), preprocessing=rate, tokenizer=_folder_tokenizer(folder))
    tensors = folder_weights(folder)
    if family == "gpt2":
        module = create_backbone(gpt2.NAME, **gpt2.backbone_args(config, folder / CONFIG))
        converted, origin, unused = gpt2.convert(tensors, folder)
        return Pretrained(module, _prefixed(fill(module, converted, folder, origin, unused)),
                          tokenizer=_folder_tokenizer(folder))
    args = vit.transformers_args(config, folder / CONFIG)
    module = create_backbone(vit.registry_name(args["dim"]), **args)
    converted, origin, head, unused = vit.convert_transformers(tensors)
    report = fill(module, converted, folder, origin, unused)
    return Pretrained(module, _prefixed(report), head, _image_stats(folder / "preprocessor_config.json"))


def _folder_tokenizer(folder: Path) -> HFTokenizer | None:
    """A transformers folder's ``tokenizer.json`` (None when it has none: image and audio models)."""
    path = folder / HF_TOKENIZER_FILE
    return HFTokenizer.load(path) if path.is_file() else None


def _timm_folder(folder: Path, config: dict[str, Any]) -> Pretrained:
    name = config["architecture"]
    if not str(name).startswith("vit_"):
        raise ZooError(f"{folder / CONFIG}: timm architecture {name!r} is not converted; zoo reads timm vit_* "
                       f"weights (other timm models: backbone='timm/{name}' with checkpoint_path=)")
    tensors = folder_weights(folder)
    heads = vit.timm_heads(name, dict(config.get("model_args", {})))
    stats = {k: list(config["pretrained_cfg"][k]) for k in ("mean", "std") if k in config.get("pretrained_cfg", {})}
    return _timm_vit(tensors, folder, heads, stats)


def _timm_vit(tensors: dict[str, torch.Tensor], path: Path, heads: int | None, stats: dict[str, Any]) -> Pretrained:
    args = vit.timm_args(tensors, heads)
    module = create_backbone(vit.registry_name(args["dim"]), **args)
    converted, head = vit.convert_timm(tensors, path)
    return Pretrained(module, _prefixed(fill(module, converted, path)), head, stats)


def _weights_file(path: Path, backbone: str | None, args: dict[str, Any]) -> Pretrained:
    if path.suffix in (".bin", ".pth", ".pt", ".ckpt"):
        raise refuse_pickle(path, path.with_suffix(".safetensors"))
    tensors = read_weights(path)
    family = weights_file_family(tensors)
    if family == "timm_vit":
        heads = None
        if backbone is not None:
            if not backbone.startswith("timm/"):
                raise ZooError(f"{path} holds timm ViT weights; backbone={backbone!r} should be 'timm/vit_...'")
            heads = vit.timm_heads(backbone[len("timm/"):], args)
        return _timm_vit(tensors, path, heads, {})
    if family == "torchaudio_wav2vec2":
        if backbone is None or not backbone.startswith("torchaudio/"):
            raise ZooError(f"{path} holds torchaudio wav2vec2-style weights, which do not say their "
                           f"architecture; {_HINT}")
        module = create_backbone(backbone, **args)
        report = fill(module.model, tensors, path)
        report.loaded = [f"model.{n}" for n in report.loaded]
        report.missing = [f"model.{n}" for n in report.missing]
        return Pretrained(module, _prefixed(report), preprocessing={"sample_rate": 16000})
    raise ZooError(f"{path}: not timm ViT or torchaudio wav2vec2 weights; zoo reads these weights files, and "
                   f"transformers folders of the families {', '.join(SUPPORTED)}")


def _prefixed(report: LoadReport) -> LoadReport:
    """The backbone's report in model names (``backbone.<name>``); the file's skipped names stay as they are."""
    return LoadReport([f"backbone.{n}" for n in report.loaded], report.skipped,
                      [f"backbone.{n}" for n in report.missing], report.skip_reason)


def _image_stats(path: Path) -> dict[str, Any]:
    """``mean``/``std`` of a transformers image processor config, when the folder has one."""
    if not path.is_file():
        return {}
    settings = json.loads(path.read_text())
    pairs = (("mean", "image_mean"), ("std", "image_std"))
    return {ours: settings[theirs] for ours, theirs in pairs if theirs in settings}
