"""``--precision``: the autocast of each choice, and the loss scaler fp16 needs on CUDA.

fp32 runs plainly; bf16 and fp16 run the forward passes under ``torch.autocast``. fp16 has a
narrow exponent range, so small gradients underflow unless the loss is scaled up first:
on CUDA the trainer does that with ``torch.amp.GradScaler`` (scale the loss, unscale the
gradients before clipping, step only when they are finite, update the scale). bf16 keeps
fp32's range and needs no scaler. `zoo train` refuses fp16 on the CPU (see ``check_train_args``).
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}     # autocast dtype of each --precision but fp32


def autocast(device_type: str, precision: str) -> AbstractContextManager:
    """``torch.autocast`` on ``device_type`` at ``precision``'s dtype; no context at all for fp32."""
    return torch.autocast(device_type, dtype=DTYPES[precision]) if precision in DTYPES else nullcontext()


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler when training fp16 on CUDA; None otherwise (fp32, bf16, or any CPU run)."""
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
