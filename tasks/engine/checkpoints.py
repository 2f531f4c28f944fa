"""The run folder's checkpoints: crash-safe ``step-N/`` folders, atomic ``best``/``last`` pointers.

A save writes everything into a hidden ``.tmp-step-N`` folder, fsyncs it, renames it to
``step-N`` and only then switches the pointers. The pointers are relative symlinks
(``best -> step-200``) replaced with ``os.replace``, so at every instant each pointer names a
complete checkpoint, and ``runs/x/best`` works as a model folder with any tool. Old step
folders that no pointer names are pruned (the newest ``keep`` stay). A process killed after
the rename but before the first pointer leaves ``step-N`` without pointers: it is complete,
and :func:`resolve_checkpoint` falls back to the newest such folder. A save that cannot write
(disk full, read-only folder) raises one ZooError and leaves the previous checkpoint in place.

The trainer's own state is pickle-free: tensors (optimizer moments, RNG states, raw weights
under EMA) in ``trainer_state.safetensors``, scalars in ``trainer_state.json``.

A sharded run (``--strategy fsdp2``) keeps its model and optimizer in ``step-N/dcp/``, written by
every rank through ``torch.distributed.checkpoint`` (DCP: one file per rank plus metadata, no
pickle of objects); :func:`load_sharded` reads it into a model sharded over any number of ranks,
or into a plain one. The same folder also holds the consolidated ``model.safetensors`` +
``config.json`` (:func:`consolidated_weights`), so every other command reads it as before.
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_state_dict)

from zoo.checkpoint import POINTERS, STEP_DIR, resolve_checkpoint  # noqa: F401 (resolve_checkpoint: re-exported)
from zoo.errors import ZooError

TRAINER_TENSORS = "trainer_state.safetensors"
TRAINER_JSON = "trainer_state.json"
SHARDED = "dcp"             # a sharded run's model + optimizer state inside step-N/
_TMP_PREFIX = ".tmp-step-"


def write_checkpoint(run_dir: Path, step: int, write: Callable[[Path], None], *, best: bool, keep: int = 2) -> Path:
    """Write checkpoint ``step`` with ``write(folder)``, then point ``last`` (and ``best``) at it.

    If ``write`` raises, the half-written folder stays hidden and the pointers keep naming
    the previous complete checkpoint; an ``OSError`` (no space, read-only folder) becomes a
    one-line ZooError after the partial folder is removed. Returns the new ``step-N`` folder.
    """
    run_dir = Path(run_dir)
    final = run_dir / f"step-{step}"
    if final.name in _pointer_targets(run_dir):
        raise FileExistsError(f"{final} is already a checkpoint named by a pointer; refusing to overwrite it")
    tmp = run_dir / f"{_TMP_PREFIX}{step}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        for path in [*sorted(tmp.rglob("*"), reverse=True), tmp]:   # files before the folders holding them
            _fsync(path)
        shutil.rmtree(final, ignore_errors=True)   # complete, never pointed at: killed between rename and switch
        os.rename(tmp, final)
        _fsync(run_dir)
        _point(run_dir, "last", final.name)
        if best:
            _point(run_dir, "best", final.name)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)     # frees the space the partial checkpoint took
        raise ZooError(f"cannot write checkpoint to {final}: {err.strerror or err}; {_fix(err)}") from None
    prune(run_dir, keep)
    return final


def _fix(err: OSError) -> str:
    """What to do about a failed checkpoint write."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space or pass another --out (the previous checkpoint is intact)"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the run folder writable or pass another --out (the previous checkpoint is intact)"
    return "pass another --out (the previous checkpoint is intact)"


def point_best(run_dir: Path, step: int) -> None:
    """Switch ``best`` to the existing checkpoint ``step-N`` (atomically)."""
    _point(Path(run_dir), "best", f"step-{step}")


def checkpoint_step(folder: Path) -> int | None:
    """The training step of a run's ``step-N`` model folder; None for a folder named otherwise."""
    match = STEP_DIR.match(Path(folder).name)
    return int(match.group(1)) if match else None


def prune(run_dir: Path, keep: int = 2) -> None:
    """Delete step folders no pointer names, except the newest ``keep``; delete stale temporaries."""
    run_dir = Path(run_dir)
    steps = sorted((int(m.group(1)), p) for p in run_dir.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir())
    protected = _pointer_targets(run_dir) | {p.name for _, p in steps[-keep:]}
    for _, path in steps:
        if path.name not in protected:
            shutil.rmtree(path)
    for path in run_dir.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


def save_trainer_state(folder: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Write the trainer's tensors (safetensors) and JSON-able scalars next to the model."""
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(Path(folder) / TRAINER_TENSORS))
    (Path(folder) / TRAINER_JSON).write_text(json.dumps(state))


def load_trainer_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_trainer_state` wrote; a missing or damaged file raises naming it."""
    tensors_file, json_file = Path(folder) / TRAINER_TENSORS, Path(folder) / TRAINER_JSON
    for file in (tensors_file, json_file):
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing: {folder} is a model folder, not a resumable checkpoint")
    try:
        tensors = load_file(str(tensors_file))
    except (SafetensorError, OSError) as err:
        raise ZooError(f"{tensors_file}: not a readable safetensors file ({err})") from None
    try:
        state = json.loads(json_file.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ZooError(f"{json_file}: not valid UTF-8 JSON ({err})") from None
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        raise ZooError(f"{json_file}: expected an object with a 'state' object; the file was altered")
    return tensors, state


def sharded_folder(run_dir: Path, step: int) -> Path:
    """The hidden folder every rank writes the DCP state of checkpoint ``step`` into; the writer of
    ``step-N`` moves it in as ``step-N/dcp`` (:data:`SHARDED`); :func:`prune` removes a stale one."""
    return Path(run_dir) / f"{_TMP_PREFIX}{step}.{SHARDED}"


def save_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Collective: every rank writes its shards of the model and optimizer state into ``folder``."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optimizer_state}, checkpoint_id=str(folder))


def load_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load what :func:`save_sharded` wrote into ``model`` and ``optimizer``, whatever the number of
    ranks now (collective under a process group; a plain model in one process works too)."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optimizer_state}
    try:
        with warnings.catch_warnings():      # one process reading a multi-process checkpoint is meant
            warnings.filterwarnings("ignore", "torch.distributed is disabled")
            dcp.load(state, checkpoint_id=str(folder))
    except (dcp.api.CheckpointException, OSError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ZooError(f"{folder}: cannot read the sharded model and optimizer state ({reason}); "
                       f"resume from another checkpoint") from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def consolidated_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the whole state dict of a sharded ``model``, on the CPU of rank 0 (empty elsewhere)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def rng_state() -> dict[str, Any]:
    """This process's RNG states: torch CPU/CUDA as uint8 tensors, python and numpy as JSON lists."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, internal, gauss = random.getstate()
    state["python"] = [version, list(internal), gauss]
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = [name, keys.tolist(), pos, has_gauss, cached]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        for key, value in state.items():
            if key.startswith("cuda.") and int(key[5:]) < torch.cuda.device_count():
                torch.cuda.set_rng_state(value, int(key[5:]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _point(run_dir: Path, name: str, target: str) -> None:
    tmp = run_dir / f".{name}.tmp"
    tmp.unlink(missing_ok=True)     # a dangling link too
    os.symlink(target, tmp)
    os.replace(tmp, run_dir / name)
    _fsync(run_dir)


def _pointer_targets(run_dir: Path) -> set[str]:
    return {os.readlink(run_dir / name) for name in POINTERS if (run_dir / name).is_symlink()}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
