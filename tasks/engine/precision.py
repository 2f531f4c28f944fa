"""``--precision``: the autocast of each choice, and the loss scaler fp16 needs on CUDA.

fp32 runs plainly; bf16 and fp16 run the forward passes under ``torch.autocast``. fp16 has a
narrow exponent range, so small gradients underflow unless the loss is scaled up first:
on CUDA the trainer does that with ``torch.amp.GradScaler`` (scale the loss, unscale the
gradients before clipping, step only when they are finite, update the scale). bf16 keeps
fp32's range and needs no scaler. `zoo train` refuses fp16 on the CPU (see ``check_train_args``).

``--precision auto`` picks from the device and the CPU's flags, never by timing (:func:`auto_precision`):
CUDA with bf16 support -> bf16, other CUDA -> fp16, a CPU with AMX (``amx_bf16``) -> bf16, any other CPU
-> fp32. A CPU with AVX512-BF16 but no AMX stays fp32: its bf16 dot product only doubles the fp32 vector
rate, which autocast's per-op casts of weights and activations eat on the small default models (the
bench measured bf16 autocast below fp32 on such small models). :func:`has_bf16_units` is the one probe
of "bf16 runs natively here" that the image task's default and the benchmark runner share.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}     # autocast dtype of each --precision but fp32
AUTO = "auto"
AUTO_HELP = ("auto: bf16 on a CUDA GPU that has it (else fp16 where the command takes it), bf16 on a CPU "
             "with AMX, fp32 on other CPUs (AVX512-BF16 alone does not pay); the choice is printed and saved")


def cpu_flags() -> set[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_bf16_units(device: torch.device) -> bool:
    """True where bf16 runs natively on ``device``: a CUDA GPU that supports it, or a CPU with bf16
    instructions (AVX512-BF16 or AMX); elsewhere PyTorch emulates bf16 and it runs slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def auto_precision(device: torch.device, choices: tuple[str, ...] = ("fp32", "bf16", "fp16")) -> str:
    """The ``--precision auto`` of ``device`` among ``choices`` (the rule is in the module docstring);
    fp32 where the pick is not among them (fp16 for a command that has no fp16)."""
    if device.type == "cuda":
        picked = "bf16" if has_bf16_units(device) else "fp16"
    else:
        picked = "bf16" if "amx_bf16" in cpu_flags() else "fp32"
    return picked if picked in choices else "fp32"


def resolve_precision(precision: str, device: torch.device, choices: tuple[str, ...]) -> str:
    """``precision`` itself, or for ``auto`` what :func:`auto_precision` picks on ``device``."""
    return auto_precision(device, choices) if precision == AUTO else precision


def autocast(device_type: str, precision: str) -> AbstractContextManager:
    """``torch.autocast`` on ``device_type`` at ``precision``'s dtype; no context at all for fp32."""
    return torch.autocast(device_type, dtype=DTYPES[precision]) if precision in DTYPES else nullcontext()


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler when training fp16 on CUDA; None otherwise (fp32, bf16, or any CPU run)."""
    return torch.amp.GradScaler("cuda") if precision == "fp16" and device.type == "cuda" else None
