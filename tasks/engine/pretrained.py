"""What ``zoo train TASK --pretrained NAME|PATH`` names, checked before any heavy work.

Three kinds: ``catalog`` (a name of ``zoo list weights``), ``zoo`` (a zoo run or model folder:
the task rebuilds its backbone's architecture and the trainer copies the weights in) and
``weights`` (a transformers folder, a timm or torchaudio safetensors file: ``zoo.create_model
(pretrained=...)`` builds the backbone that fits). A task says which kinds it starts from in
``Task.pretrained_kinds``: ``weights`` takes any weights source, a family name of :data:`FAMILIES`
(``gpt2``, ``vit``, ``timm_vit``, ``wav2vec2``...) only sources of that family, told apart by
their ``config.json`` or, for a bare file, the names of its tensors (nothing is loaded).
"""
from __future__ import annotations

import json
from pathlib import Path

from zoo.checkpoint import CONFIG, read_config, resolve_checkpoint
from zoo.cli import did_you_mean
from zoo.errors import ZooError
from zoo.pretrained import catalog
from zoo.pretrained.sources import weights_file_family
from zoo.tokenizer import BaseTokenizer, stored_tokenizer

FLAG = "--pretrained"
KINDS = ("catalog", "zoo", "weights")
_DESCRIBED = {"catalog": "named weights", "zoo": "a zoo run or model folder",
              "weights": "a transformers folder or a timm/torchaudio weights file"}
FAMILIES = {"gpt2": "a transformers GPT-2 folder", "vit": "a transformers ViT folder",
            "timm_vit": "a timm ViT weights file or hub folder", "bert": "a transformers BERT folder",
            "marian": "a transformers Marian folder", "wav2vec2": "a transformers wav2vec2 folder",
            "whisper": "a transformers Whisper folder",
            "torchaudio_wav2vec2": "a torchaudio wav2vec2 weights file (with --backbone torchaudio/<factory>)"}


def source_kind(source: str) -> str:
    """``catalog``, ``zoo`` or ``weights`` for ``--pretrained source``; refuses what is none of them."""
    if catalog.is_name(source):
        return "catalog"
    path = Path(source)
    if not path.exists():
        names = list(catalog.BUILTIN)
        raise ZooError(f"{FLAG} {source}: no such file or folder, nor a catalog name (`zoo list weights`: "
                       f"{', '.join(names)}){did_you_mean(source, names)}")
    if path.is_file():
        return "weights"
    config = path / CONFIG
    if not config.is_file():
        try:
            resolve_checkpoint(path)
        except FileNotFoundError as err:
            raise ZooError(f"{FLAG} {source}: {err}; pass a run folder, a model folder or a transformers "
                           f"folder (config.json + model.safetensors)") from None
        return "zoo"
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"{FLAG} {source}: {config} is not JSON ({err})") from None
    return "zoo" if isinstance(settings, dict) and "format_version" in settings else "weights"


def weights_family(source: str) -> str:
    """The family of weights source ``source`` (a key of :data:`FAMILIES`), or how to describe one
    zoo reads for no task ("a bert folder", "a timm resnet18 folder", "unknown weights")."""
    path = Path(source)
    if path.is_file():
        return _file_family(path)
    config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    if "model_type" in config:
        family = str(config["model_type"])
        return family if family in FAMILIES else f"a transformers {family} folder"
    architecture = str(config.get("architecture", "?"))
    return "timm_vit" if architecture.startswith("vit_") else f"a timm {architecture} folder"


def _file_family(path: Path) -> str:
    """``timm_vit`` or ``torchaudio_wav2vec2`` from a safetensors file's tensor names."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
    except (SafetensorError, OSError):
        return f"{path.suffix or 'a'} file that is no safetensors"
    return weights_file_family(names) or "a safetensors file of no family zoo reads"


def check_source(task_name: str, kinds: tuple[str, ...], source: str) -> str:
    """The kind of ``source``, refused unless task ``task_name`` starts from that kind (``kinds``:
    a weights source must be of a family ``kinds`` names, or ``weights`` be among them); a catalog
    name must be prepared and match its card."""
    kind = source_kind(source)
    family = weights_family(source) if kind == "weights" and "weights" not in kinds else None
    if kind not in kinds and family not in kinds:
        names = [_DESCRIBED.get(k) or FAMILIES[k] for k in kinds]
        takes = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        found = FAMILIES.get(family, family) if family else _DESCRIBED[kind]
        raise ZooError(f"{FLAG} {source} is {found}; the {task_name} task starts from {takes}")
    if kind == "catalog":
        try:
            catalog.resolve(source)
        except FileNotFoundError as err:
            raise ZooError(f"{FLAG} {source}: {err}") from None
    return kind


def zoo_backbone(source: str, backbone: str | None, backbone_args: dict | None,
                 default_backbone: str | None = None) -> tuple[str, dict, dict, Path]:
    """The backbone a zoo ``--pretrained`` checkpoint describes: ``(registry name, arguments, config, folder)``.

    The arguments are the checkpoint's with ``backbone_args`` (``--backbone-args``) on top; shapes
    they change are then not loaded, which the trainer reports. A ``backbone`` (``--backbone``)
    naming another architecture than the checkpoint's (or than ``default_backbone``, the value a
    task may fill in itself) is refused.
    """
    folder = resolve_checkpoint(source, "best")
    config = read_config(folder)
    name = config["backbone"]["name"]
    if backbone not in (None, default_backbone, name):
        raise ZooError(f"--backbone {backbone} conflicts with {FLAG} {source}, whose backbone is {name!r} "
                       "(omit --backbone to reuse it)")
    return name, {**config["backbone"]["args"], **(backbone_args or {})}, config, folder


def checkpoint_tokenizer(folder: Path, config: dict, reads: str) -> BaseTokenizer:
    """The tokenizer the zoo checkpoint in ``folder`` (its ``config``) stores; refused when it stores none,
    since its backbone then cannot read ``reads`` ("text", "sentiment texts")."""
    if not config.get("tokenizer"):
        raise ValueError(f"{Path(folder) / 'config.json'}: this checkpoint stores no tokenizer, "
                         f"so its backbone cannot read {reads}")
    return stored_tokenizer(folder, config)
