"""Pickle-free model folders: safetensors weights and a versioned ``config.json``, checked on read.

Every mistake in a folder (truncated or tampered weights, NaN, a config that is not JSON, not
UTF-8, of the wrong shape or types) raises :class:`~zoo.errors.ZooError` naming the file and the
tensor or field; a missing file raises ``FileNotFoundError`` naming it.

``config.json`` carries ``format_version``. A change to its layout bumps :data:`FORMAT_VERSION`
and registers ``@migration(N)`` turning a version-N config into version N+1; :func:`read_config`
applies them in order, so every folder any zoo version saved keeps loading.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from zoo.errors import ZooError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 2   # 2: field tokenizer_kind (a sentencepiece or a Hugging Face tokenizers file)
POINTERS = ("best", "last")   # a run folder's links to its best and last step-N checkpoints
STEP_DIR = re.compile(r"step-(\d+)$")   # a run folder's checkpoint folders
_PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.bin", "checkpoint.pt")
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
# field -> (JSON types allowed, required); "name"/"args" of backbone and head(s) are checked below.
# A multi-head model (zoo.multihead) has "heads" {name: {"name", "args"}} instead of "head".
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "backbone": ((dict,), True), "head": ((dict,), False), "task": ((str, type(None)), False),
    "heads": ((dict,), False), "head_weights": ((dict, type(None)), False),
    "head_targets": ((dict, type(None)), False),
    "preprocessing": ((dict, type(None)), False), "tokenizer": ((str, type(None)), False),
    "lora": ((dict, type(None)), False),
    "quantization": ((dict, type(None)), False),
    "tokenizer_kind": ((str, type(None)), False),
}


def migration(version: int) -> Callable[[Callable[[dict], dict]], Callable[[dict], dict]]:
    """Register ``migrate_v{version}_to_v{version + 1}(config) -> config`` (applied on read)."""

    def decorator(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        if version in MIGRATIONS:
            raise ValueError(f"a migration from format_version {version} is already registered")
        MIGRATIONS[version] = fn
        return fn

    return decorator


def migrate(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """``config`` (of file ``path``) brought from its ``format_version`` to :data:`FORMAT_VERSION`."""
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ZooError(f"{path}: field 'format_version' is {version!r}, expected a version number >= 1; "
                       f"this is not a config.json written by zoo")
    if version > FORMAT_VERSION:
        raise ZooError(f"{path}: format_version {version} was written by a newer zoo (this one reads up to "
                       f"{FORMAT_VERSION}); upgrade zoo to load it")
    while version < FORMAT_VERSION:
        config = dict(MIGRATIONS[version](dict(config)))
        version += 1
        config["format_version"] = version
    return config


@migration(1)
def migrate_v1_to_v2(config: dict[str, Any]) -> dict[str, Any]:
    """Format 1 stored only sentencepiece tokenizers: say so in ``tokenizer_kind``."""
    config["tokenizer_kind"] = "sentencepiece" if config.get("tokenizer") is not None else None
    return config


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors: u64 header length, then the JSON header
        return False
    return head[:2] == b"PK" or head[:1] == b"\x80"  # torch zip archive or raw pickle protocol


def read_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of ``directory/model.safetensors``; refuses pickles and names corrupt files."""
    directory = Path(directory)
    path = directory / WEIGHTS if directory.is_dir() else directory
    if path.is_dir():
        raise ZooError(f"{path} is a directory, not a weights file; put the model's {WEIGHTS} there")
    if not path.exists():
        pickled = [directory / n for n in _PICKLE_NAMES if (directory / n).exists()] if directory.is_dir() else []
        if pickled:
            raise ZooError(f"{pickled[0]} is a pickle-based checkpoint; zoo loads only safetensors "
                           f"(pickle can run arbitrary code). Convert it to {WEIGHTS} first.")
        raise FileNotFoundError(f"no weights file {path}")
    if _looks_like_pickle(path):
        raise ZooError(f"{path} is a pickle/torch.save file, not safetensors; refusing to unpickle it")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ZooError(f"{path} is truncated or corrupted and cannot be read as safetensors: {err}") from None


def check_weights(path: Path, stored: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Refuse weights of file ``path`` whose dtype kind or shape differs from the model's
    ``expected`` tensors of the same name, or that hold NaN/inf (names the tensor)."""
    for name, want in expected.items():   # in the model's order: the first bad tensor is reported
        tensor = stored.get(name)
        if tensor is None:
            continue
        if tensor.shape != want.shape:
            raise ZooError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)} but config.json builds "
                           f"{tuple(want.shape)}; the config does not describe these weights")
        if tensor.is_floating_point() != want.is_floating_point() or (
                not want.is_floating_point() and tensor.dtype != want.dtype):
            raise ZooError(f"{path}: tensor {name!r} is {tensor.dtype}, expected {want.dtype}; "
                           f"the file was altered, re-save the model")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor.float()).all()):
            raise ZooError(f"{path}: tensor {name!r} holds NaN or inf values; load a checkpoint saved "
                           f"before training diverged")


def read_config(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a model folder, migrated to the current format and checked field by field."""
    path = Path(directory) / CONFIG
    if path.is_dir():
        raise ZooError(f"{path} is a directory, not a file; {directory} is not a zoo model folder")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a zoo model folder")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ZooError(f"{path}: not UTF-8 text (byte {err.start}); re-save the model") from None
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(config, dict):
        raise ZooError(f"{path}: expected a JSON object at the top, got {type(config).__name__}")
    config = migrate(config, path)
    for field, (types, required) in _FIELDS.items():
        if field not in config:
            if required:
                raise ZooError(f"{path}: field {field!r} is missing")
            continue
        if not isinstance(config[field], types):
            raise ZooError(f"{path}: field {field!r} is {_json_type(config[field])}, expected "
                           f"{' or '.join(_json_type(t()) for t in types)}")
    if ("head" in config) == ("heads" in config):
        raise ZooError(f"{path}: expected exactly one of the fields 'head' (one head) and 'heads' (several)")
    parts = {"backbone": config["backbone"]}
    if "head" in config:
        parts["head"] = config["head"]
    else:
        if not config["heads"]:
            raise ZooError(f"{path}: field 'heads' is empty; expected {{name: {{\"name\", \"args\"}}}}")
        for name, spec in config["heads"].items():
            if not isinstance(spec, dict):
                raise ZooError(f"{path}: field 'heads.{name}' is {_json_type(spec)}, expected an object")
            parts[f"heads.{name}"] = spec
    for part, spec in parts.items():
        if not isinstance(spec.get("name"), str):
            raise ZooError(f"{path}: field '{part}.name' is {_json_type(spec.get('name'))}, expected a registry name")
        if not isinstance(spec.get("args", {}), dict):
            raise ZooError(f"{path}: field '{part}.args' is {_json_type(spec['args'])}, expected an object")
    tokenizer = config.get("tokenizer")
    if tokenizer is not None and (Path(tokenizer).name != tokenizer or tokenizer in ("", ".", "..")):
        raise ZooError(f"{path}: field 'tokenizer' is {tokenizer!r}, expected a file name inside {directory}")
    return config


def _json_type(value: Any) -> str:
    """How JSON calls the type of ``value`` (for messages)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A model folder -> itself; a run folder -> the folder its ``prefer`` pointer names.

    ``prefer`` is "best" (evaluation, prediction, transfer) or "last" (resume); a run with
    only the other pointer falls back to it, and a run with neither (killed between renaming
    its first ``step-N`` and pointing at it) to its newest complete ``step-N``.
    """
    if prefer not in POINTERS:
        raise ValueError(f"prefer={prefer!r}: expected one of {POINTERS}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is a file, not a model folder or a run folder")
    if (path / CONFIG).exists() or (path / WEIGHTS).exists():   # a model folder: reading names its faults
        return path
    for name in (prefer, *[p for p in POINTERS if p != prefer]):
        if (path / name).exists():
            return (path / name).resolve()
    complete = complete_steps(path)
    if complete:
        return complete[-1].resolve()
    raise FileNotFoundError(
        f"{path} is neither a model folder (no config.json) nor a run folder with a 'best' or 'last' checkpoint"
    )


def complete_steps(run_dir: Path) -> list[Path]:
    """``step-N`` folders holding a model (config.json and weights), oldest first."""
    steps = sorted((int(m.group(1)), p) for p in run_dir.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir())
    return [p for _, p in steps if (p / CONFIG).is_file() and (p / WEIGHTS).is_file()]
