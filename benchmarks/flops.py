"""FLOP counting, device peak FLOP/s (MFU) and the plain-matmul reference.

``torch.utils.flop_counter.FlopCounterMode`` has formulas for the CUDA attention kernels
but none for ``aten._scaled_dot_product_flash_attention_for_cpu`` (nor its backward, nor
the ``fused_attention_overrideable`` pair), so on the CPU it counts attention as zero
and undercounts a ViT by 8-14%. :func:`extra_flop_mapping` fills exactly the gaps,
through ``custom_mapping`` (plus the real FFT under log-mel front ends). Like PyTorch's own formulas these count the full (T_q, T_k)
score matrix: causal attention is counted as if dense, an upper bound, the usual
convention for MFU.
"""
from __future__ import annotations

import math
import re
import warnings
from typing import Any, Callable

import torch
from torch.utils import flop_counter

from tasks.engine.bench import run_context
from tasks.engine.task import Workload

aten = torch.ops.aten

# Dense peak FLOP/s by device-name pattern (first match wins; vendor datasheets, no sparsity).
# "fp32" is the plain FP32 pipe; "tf32" applies when fp32 matmuls may use TF32.
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    (r"H100.*PCIe", {"bf16": 756e12, "tf32": 378e12, "fp32": 51.2e12}),
    (r"H[12]00.*NVL", {"bf16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12}),   # NVL boards: lower clocks and power
    (r"H100|H200|GH200", {"bf16": 989e12, "tf32": 494.7e12, "fp32": 66.9e12}),
    (r"A100", {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
    (r"L40S", {"bf16": 362e12, "tf32": 183e12, "fp32": 91.6e12}),
    (r"\bL4\b", {"bf16": 121e12, "tf32": 60e12, "fp32": 30.3e12}),
    (r"RTX 4090", {"bf16": 165e12, "tf32": 82.6e12, "fp32": 82.6e12}),
    (r"RTX 3090", {"bf16": 71e12, "tf32": 35.6e12, "fp32": 35.6e12}),
    (r"V100", {"fp32": 15.7e12}),
]


def _attention_shapes_flops(query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size) -> int:
    """Forward attention FLOPs: scores Q K^T and the weighted sum P V, 2 FLOPs per multiply-add."""
    batch, heads, q_len, head_dim = query_shape
    k_len, v_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * q_len * k_len * head_dim + 2 * batch * heads * q_len * k_len * v_dim


def attention_forward_flops(query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size,
                            *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of one SDPA forward call: ``4 * B * H * T_q * T_k * head_dim`` (for equal dims).

    Key/value may have fewer heads (GQA): they are broadcast to the query's heads.
    """
    return _attention_shapes_flops(query_shape, key_shape, value_shape)


def attention_backward_flops(grad_out_shape: torch.Size, query_shape: torch.Size, key_shape: torch.Size,
                             value_shape: torch.Size, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of one SDPA backward call: the scores are recomputed (1 matmul) and the gradients
    dP, dV, dQ, dK take 4 more: 2.5x the forward."""
    return _attention_shapes_flops(query_shape, key_shape, value_shape) * 5 // 2


def real_fft_flops(input_shape: torch.Size, dim: list[int], *args: Any, out_shape: Any = None,
                   **kwargs: Any) -> int:
    """FLOPs of a real-input FFT (``aten._fft_r2c``, under ``torch.stft``): the conventional
    ``5 N log2 N`` of a complex FFT of size N, halved for real input, times the batch."""
    size = math.prod(input_shape[d] for d in dim)
    batch = math.prod(input_shape) // max(size, 1)
    return int(2.5 * size * math.log2(size) * batch) if size > 1 else 0


_FORMULAS: dict[Any, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: attention_forward_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: attention_backward_flops,
    aten._scaled_dot_product_fused_attention_overrideable: attention_forward_flops,
    aten._scaled_dot_product_fused_attention_overrideable_backward: attention_backward_flops,
    aten._fft_r2c: real_fft_flops,
}


def extra_flop_mapping() -> dict[Any, Callable[..., int]]:
    """``custom_mapping`` for FlopCounterMode: our formula for each kernel PyTorch has none for
    (the CPU attention kernels, the real FFT of log-mel front ends)."""
    return {op: formula for op, formula in _FORMULAS.items() if op not in flop_counter.flop_registry}


def count_flops(fn: Callable[[], Any]) -> int:
    """Total FLOPs of running ``fn()`` once (forward, and backward if it runs one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compiled modules warn about the counter's global hooks
        with flop_counter.FlopCounterMode(display=False, custom_mapping=extra_flop_mapping()) as counter:
            fn()
    return counter.get_total_flops()


def workload_flops_per_item(workload: Workload, device: torch.device, precision: str) -> float | None:
    """FLOPs per item of one step (run under the harness's context); None when nothing is counted."""
    with run_context(device, precision, workload.mode):
        total = count_flops(workload.step)
    return total / workload.items if total else None


def peak_kind(precision: str) -> str:
    """The datasheet column an MFU at ``precision`` divides by: ``bf16``; for fp32, ``tf32`` when fp32
    matrix products may use TF32 (``torch.set_float32_matmul_precision`` not "highest"), else ``fp32``.
    (cuDNN convolutions follow ``torch.backends.cudnn.allow_tf32`` instead; the machine record names both.)"""
    if precision == "fp32" and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return precision


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak FLOP/s at ``precision`` (:func:`peak_kind`); None on the CPU or for unknown GPUs."""
    if device.type != "cuda":
        return None
    return peak_flops_by_name(torch.cuda.get_device_name(device), peak_kind(precision))


def peak_flops_by_name(name: str, key: str) -> float | None:
    """Look ``name`` up in :data:`PEAK_FLOPS` (``key``: bf16, tf32 or fp32)."""
    for pattern, peaks in PEAK_FLOPS:
        if re.search(pattern, name):
            return peaks.get(key)
    return None


def matmul_size(device: torch.device, quick: bool) -> int:
    """Square size of the reference matmul: large enough to reach the device's matmul speed."""
    if device.type == "cuda":
        return 8192
    return 1024 if quick else 2048


def matmul_workload(device: torch.device, precision: str, size: int) -> Workload:
    """A plain (size x size) @ (size x size) matmul in the precision's dtype; items are FLOPs.

    Its items/s is therefore the achieved FLOP/s, the ceiling our rows are a fraction of.
    """
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    return Workload(name=f"torch.mm {size}x{size} {precision}", unit="FLOP", items=2.0 * size ** 3,
                    step=lambda: torch.mm(a, b), batch_size=1, config=f"{size}x{size}")
