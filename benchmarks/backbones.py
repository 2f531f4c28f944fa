"""The backbone suite: our backbones against the libraries they are measured by, same shapes.

- ViT-S/16 at 224x224 (``zoo.create_backbone("vit_small")``) vs timm ``vit_small_patch16_224``
  (random init, ``forward_features``: the same patch embedding, 12 blocks and final norm),
  inference images/s. Its fp32 row's fraction of matmul FLOP/s is the issue's 60% goal.
- The speech encoder's subsampling + blocks (``encode_features`` on log-mel input) vs
  ``torchaudio.models.Conformer`` of the same dimensions behind an identical copy of our
  convolutional subsampling (torchaudio's Conformer has none), inference audio seconds/s.
- The log-mel front end alone, as its own row (no reference).

``workloads`` has the signature of ``Task.bench_workloads``; precision is applied by the
harness (autocast), so it only names the row.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable

import timm
import torch
import torchaudio
from torch import nn

import zoo
from tasks.asr.bench import CONFORMER_DIFFERS
from tasks.engine.bench import maybe_compile
from tasks.engine.task import Workload

VIT_NAME, VIT_TIMM = "vit_small", "vit_small_patch16_224"
SPEECH_NAME = "speech_encoder_small"
IMAGE_SIZE = 224


@dataclass(frozen=True)
class Shapes:
    """Batch sizes and clip length of the suite on one device."""

    vit_batch: int
    speech_batch: int
    speech_seconds: float


def shapes(device: torch.device, quick: bool) -> Shapes:
    """Large batches on a GPU (busy enough to measure the kernels), small ones on a CPU."""
    if device.type == "cuda":
        return Shapes(128, 32, 10.0) if quick else Shapes(512, 128, 10.0)
    return Shapes(4, 2, 10.0) if quick else Shapes(16, 8, 10.0)


def forward_workload(name: str, unit: str, per_sample: float, fn: Callable[..., Any],
                     make_inputs: Callable[[int], tuple[torch.Tensor, ...]], batch: int,
                     model: nn.Module, config: str) -> Workload:
    """An inference workload calling ``fn(*make_inputs(batch))``, rebuildable at any batch size."""
    inputs = make_inputs(batch)
    return Workload(name=name, unit=unit, items=per_sample * batch, step=lambda: fn(*inputs), model=model,
                    batch_size=batch, config=config,
                    factory=lambda size: forward_workload(name, unit, per_sample, fn, make_inputs, size,
                                                          model, config))


def vit_pair(device: torch.device, batch: int, compile: bool | str) -> tuple[Workload, Workload]:
    """Our ViT-S/16 vs timm's on the same (batch, 3, 224, 224) images."""
    ours = zoo.create_backbone(VIT_NAME, img_size=IMAGE_SIZE, patch_size=16).to(device).eval()
    theirs = timm.create_model(VIT_TIMM, pretrained=False, num_classes=0).to(device).eval()

    def images(size: int) -> tuple[torch.Tensor]:
        return (torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, device=device),)

    config = f"{IMAGE_SIZE}x{IMAGE_SIZE}, patch 16"
    return (forward_workload(f"zoo {VIT_NAME}", "images", 1, maybe_compile(ours, compile), images, batch,
                             ours, config),
            forward_workload(f"timm {VIT_TIMM}", "images", 1, maybe_compile(theirs.forward_features, compile),
                             images, batch, theirs, config))


class SubsampledConformer(nn.Module):
    """The reference: a copy of our conv subsampling, then ``torchaudio.models.Conformer``."""

    def __init__(self, subsample: nn.Module, dim: int, heads: int, ffn_dim: int, depth: int, kernel: int) -> None:
        super().__init__()
        self.subsample = copy.deepcopy(subsample)
        self.conformer = torchaudio.models.Conformer(input_dim=dim, num_heads=heads, ffn_dim=ffn_dim,
                                                     num_layers=depth, depthwise_conv_kernel_size=kernel)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """feats: log-mel (B, T, M), mask (B, T) or None -> (B, T/4, D)."""
        x, step_mask = self.subsample(feats, mask)  # (B, T', D)
        if step_mask is None:
            lengths = torch.full((x.shape[0],), x.shape[1], device=x.device)
        else:
            lengths = step_mask.sum(dim=1)
        return self.conformer(x, lengths)[0]


def speech_pairs(device: torch.device, batch: int, seconds: float,
                 compile: bool | str) -> list[tuple[Workload, Workload | None]]:
    """(our subsampling + blocks vs torchaudio Conformer) and (our log-mel front end, no reference)."""
    ours = zoo.create_backbone(SPEECH_NAME).to(device).eval()
    cfg = ours.cfg
    theirs = SubsampledConformer(ours.subsample, cfg.dim, cfg.heads, int(cfg.dim * cfg.mlp_ratio), cfg.depth,
                                 cfg.conv_kernel).to(device).eval()
    samples = int(seconds * cfg.sample_rate)
    frames = int(ours.frontend.frames(torch.tensor(samples)))

    def log_mel(size: int) -> tuple[torch.Tensor, None]:
        return torch.randn(size, frames, cfg.n_mels, device=device), None

    def waves(size: int) -> tuple[torch.Tensor, None]:
        return 0.1 * torch.randn(size, samples, device=device), None

    blocks = f"{seconds:g} s clips, {frames} log-mel frames, dim {cfg.dim}, {cfg.depth} layers"
    return [
        (replace(forward_workload(f"zoo {SPEECH_NAME} blocks", "audio seconds", seconds,
                                  maybe_compile(ours.encode_features, compile), log_mel, batch, ours, blocks),
                 differs=CONFORMER_DIFFERS),
         forward_workload("torchaudio Conformer", "audio seconds", seconds,
                          maybe_compile(theirs, compile), log_mel, batch, theirs, blocks)),
        (forward_workload(f"zoo {SPEECH_NAME} log-mel front end", "audio seconds", seconds,
                          maybe_compile(ours.frontend, compile), waves, batch, ours.frontend,
                          f"{seconds:g} s at {cfg.sample_rate} Hz, {cfg.n_mels} mels"),
         None),
    ]


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool | str = False) -> list[tuple[Workload, Workload | None]]:
    """The suite's (ours, reference) pairs on ``device``."""
    size = shapes(device, quick)
    return [vit_pair(device, size.vit_batch, compile),
            *speech_pairs(device, size.speech_batch, size.speech_seconds, compile)]
