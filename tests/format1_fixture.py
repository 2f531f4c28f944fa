"""The model folder format-1 code saved (a tiny sentiment model), kept as text in the repository.

``tests/fixtures/sentiment_v1`` holds its ``config.json``, ``tokenizer.model`` and
``expected.json``, and its weights as exact float32 values in ``weights.json`` (no binary
weight file is tracked). :func:`format1_folder` writes the complete folder, ``model.safetensors``
included, once per test session into a temporary folder.
"""
from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from zoo.checkpoint import WEIGHTS

SOURCE = Path(__file__).parent / "fixtures" / "sentiment_v1"
VALUES = "weights.json"


@functools.cache
def format1_folder() -> Path:
    """The format-1 model folder (config.json, model.safetensors, tokenizer.model, expected.json)."""
    root = Path(tempfile.mkdtemp(prefix="zoo-format1-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    folder = root / SOURCE.name
    shutil.copytree(SOURCE, folder, ignore=shutil.ignore_patterns(VALUES))
    stored = json.loads((SOURCE / VALUES).read_text())
    tensors = {name: torch.tensor(spec["values"], dtype=getattr(torch, spec["dtype"])).reshape(spec["shape"])
               for name, spec in stored.items()}
    save_file(tensors, str(folder / WEIGHTS))
    return folder
