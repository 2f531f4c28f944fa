"""Reading a pretrained folder's safetensors and copying converted tensors into a module, with a report."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from zoo.checkpoint import WEIGHTS, read_weights
from zoo.errors import ZooError
from zoo.model import LoadReport

INDEX = "model.safetensors.index.json"
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
UNUSED = "not used by zoo"


def conversion_command(pickle_file: Path, target: Path) -> str:
    """The one line that turns a trusted pickle state dict into safetensors."""
    return (f"python -c \"import torch; from safetensors.torch import save_file; "
            f"sd = torch.load('{pickle_file}', weights_only=True); "
            f"save_file({{k: v.clone() for k, v in sd.items()}}, '{target}')\"")


def refuse_pickle(pickle_file: Path, target: Path) -> ZooError:
    """The error for a pickle checkpoint: names the file and the conversion to run where it is trusted."""
    return ZooError(f"{pickle_file} is a pickle checkpoint and zoo reads only safetensors (unpickling can run "
                    f"code); where you trust the file, convert it once: {conversion_command(pickle_file, target)}")


def folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a pretrained folder: ``model.safetensors`` or the shards its index names."""
    if (folder / WEIGHTS).is_file():
        return read_weights(folder)
    if (folder / INDEX).is_file():
        shards = sorted(set(json.loads((folder / INDEX).read_text())["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(read_weights(folder / shard))
        return tensors
    pickled = sorted(p for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickled:
        raise refuse_pickle(pickled[0], folder / WEIGHTS)
    raise FileNotFoundError(f"{folder} holds no {WEIGHTS}: save the model with save_pretrained(..., "
                            f"safe_serialization=True) or put its safetensors weights there")


def fill(module: nn.Module, converted: dict[str, torch.Tensor], source: Path,
         origin: dict[str, str] | None = None, skipped: list[str] | None = None) -> LoadReport:
    """Copy ``converted`` (our names) into ``module``; refuse a shape mismatch naming the tensor.

    ``origin`` maps our names to the file's (for messages); ``skipped`` lists the file's tensors
    the conversion dropped. Tensors of ``module`` the file lacks stay as built (``missing``).
    """
    origin = origin or {}
    own = module.state_dict()
    report = LoadReport(skipped=sorted(skipped or []), skip_reason=UNUSED)
    for name, tensor in converted.items():
        if name not in own:
            report.skipped.append(origin.get(name, name))
        elif tensor.shape != own[name].shape:
            raise ZooError(f"{source}: tensor {origin.get(name, name)!r} has shape {tuple(tensor.shape)} but the "
                           f"model its config describes needs {tuple(own[name].shape)}; the weights and the "
                           f"config do not belong together")
    with torch.no_grad():
        for name, tensor in own.items():
            if name in converted:
                tensor.copy_(converted[name])
                report.loaded.append(name)
            else:
                report.missing.append(name)
    return report
