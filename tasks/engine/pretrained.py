"""What ``zoo train TASK --pretrained NAME|PATH`` names, checked before any heavy work.

Three kinds: ``catalog`` (a name of ``zoo list weights``), ``zoo`` (a zoo run or model folder:
the task rebuilds its backbone's architecture and the trainer copies the weights in) and
``weights`` (a transformers folder, a timm or torchaudio safetensors file: ``zoo.create_model
(pretrained=...)`` builds the backbone that fits). A task says which kinds it starts from in
``Task.pretrained_kinds``.
"""
from __future__ import annotations

import json
from pathlib import Path

from zoo.checkpoint import CONFIG, resolve_checkpoint
from zoo.cli import did_you_mean
from zoo.errors import ZooError
from zoo.pretrained import catalog

FLAG = "--pretrained"
KINDS = ("catalog", "zoo", "weights")
_DESCRIBED = {"catalog": "named weights", "zoo": "a zoo run or model folder",
              "weights": "a transformers folder or a timm/torchaudio weights file"}


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


def check_source(task_name: str, kinds: tuple[str, ...], source: str) -> str:
    """The kind of ``source``, refused unless task ``task_name`` starts from that kind (``kinds``);
    a catalog name must be prepared and match its card."""
    kind = source_kind(source)
    if kind not in kinds:
        takes = " or ".join(_DESCRIBED[k] for k in kinds)
        raise ZooError(f"{FLAG} {source} is {_DESCRIBED[kind]}; the {task_name} task starts from {takes}")
    if kind == "catalog":
        try:
            catalog.resolve(source)
        except FileNotFoundError as err:
            raise ZooError(f"{FLAG} {source}: {err}") from None
    return kind
