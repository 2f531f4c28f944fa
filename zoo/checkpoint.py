"""Pickle-free weight files: safetensors in, clear errors naming the file out."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1
_PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.bin", "checkpoint.pt")


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
    if not path.exists():
        pickled = [directory / n for n in _PICKLE_NAMES if (directory / n).exists()] if directory.is_dir() else []
        if pickled:
            raise ValueError(f"{pickled[0]} is a pickle-based checkpoint; zoo loads only safetensors "
                             f"(pickle can run arbitrary code). Convert it to {WEIGHTS} first.")
        raise FileNotFoundError(f"no weights file {path}")
    if _looks_like_pickle(path):
        raise ValueError(f"{path} is a pickle/torch.save file, not safetensors; refusing to unpickle it")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is truncated or corrupted and cannot be read as safetensors: {err}") from None


def read_config(directory: str | Path) -> dict:
    """``config.json`` of a model folder, checking its format version."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a zoo model folder")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is not supported (this zoo reads {FORMAT_VERSION})")
    return config
