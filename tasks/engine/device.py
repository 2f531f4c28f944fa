"""The one reading of ``--device`` (``zoo train|eval|predict``, the trainer's ranks, the benchmarks)."""
from __future__ import annotations

import torch

from zoo.errors import ZooError


def pick_device(flag: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU when torch sees one, else the CPU; ``cuda`` -> GPU ``local_rank``
    (modulo the GPU count); ``cuda:N`` -> GPU ``N``. A GPU asked for without one, or another
    value, raises a ZooError naming the flag."""
    if flag == "auto":
        flag = "cuda" if torch.cuda.is_available() else "cpu"
    if flag == "cpu":
        return torch.device("cpu")
    kind, colon, index = flag.partition(":")
    if kind != "cuda" or (colon and not index.isdigit()):
        raise ZooError(f"--device {flag!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ZooError(f"--device {flag} was asked for but torch sees no CUDA device; use --device cpu (or auto)")
    return torch.device("cuda", int(index) if index else local_rank % torch.cuda.device_count())
