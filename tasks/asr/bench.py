"""Speech recognition benchmark workloads, in seconds of audio per second (the inverse real-time factor).

Pairs of (ours, reference), same shapes, each with the same CTC head and loss:

- Encoder + CTC on log-mel input, training (one AdamW step) and inference (forward + greedy
  decode): the task's default encoder (subsampling + Conformer blocks, ``encode_features``)
  against ``torchaudio.models.Conformer`` of the same width, depth, heads, feed-forward and
  kernel size behind the same convolutional subsampling (the ``torchaudio/conformer`` backbone).
  Both read the same log-mel features, computed once outside the timed step.
- Our log-mel front end alone (inference), with no reference: the cost the pair above leaves out.
- The whole model on waveforms, training and inference: ours (front end, SpecAugment in
  training, encoder, CTC) against ``torchaudio.models.wav2vec2_base`` + the same CTC head on
  the same audio (a far larger model: the row shows what the small encoder buys). A wav2vec2
  training step takes several seconds on a CPU even for one short clip (95M weights read three
  times), so ``quick`` CPU runs leave that one reference out.

Precision (bf16 autocast) and inference mode are applied by the harness; ``compile`` wraps the
forward passes of both sides with ``torch.compile``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

import zoo
from tasks.asr.task import BACKBONE_DEFAULTS, HEAD_DEFAULTS
from tasks.engine.bench import maybe_compile, mode_step
from tasks.engine.task import Workload
from zoo.features import Features

ENCODER = "speech_encoder_tiny"
CHARS_PER_SECOND = 12   # length of the random transcripts (CTC needs fewer units than frames)


@dataclass(frozen=True)
class Shape:
    """Batch and clip length of each pair on one device."""

    batch: int            # clips per step, encoder pairs
    seconds: float
    full_batch: int       # clips per step, whole-model pairs (wav2vec2_base is ~40x our encoder)
    full_seconds: float


def shape(device: torch.device, quick: bool) -> Shape:
    """Busy shapes on a GPU; on a CPU, ``quick`` keeps every step well under two seconds."""
    if device.type == "cuda":
        return Shape(32, 8.0, 16, 8.0) if quick else Shape(128, 8.0, 32, 8.0)
    return Shape(2, 2.0, 1, 1.0) if quick else Shape(16, 4.0, 2, 4.0)


# how our speech encoder's blocks differ from torchaudio's Conformer of the same size (what the rows say)
CONFORMER_DIFFERS = ("same size, different block: ours rotates queries and keys (RoPE) and uses GELU; torchaudio's "
                     "Conformer has no position encoding in attention and uses SiLU")
WAV2VEC2_DIFFERS = "different model: our small Conformer-style encoder against wav2vec2_base's 95M parameters"


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool | str = False) -> list[tuple[Workload, Workload | None]]:
    """(ours, reference) pairs: encoder train/inference vs torchaudio Conformer, front end, whole
    model train/inference vs wav2vec2_base."""
    size = shape(device, quick)
    pairs: list[tuple[Workload, Workload | None]] = [
        (replace(encoder_workload("ours", mode, device, compile, size.seconds, size.batch), differs=CONFORMER_DIFFERS),
         encoder_workload("conformer", mode, device, compile, size.seconds, size.batch))
        for mode in ("train", "inference")]
    pairs.append((frontend_workload(device, compile, size.seconds, size.batch), None))
    for mode in ("train", "inference"):
        reference = (whole_workload("wav2vec2", mode, device, compile, size.full_seconds, size.full_batch)
                     if mode == "inference" or not quick or device.type == "cuda" else None)
        ours = replace(whole_workload("ours", mode, device, compile, size.full_seconds, size.full_batch),
                       differs=WAV2VEC2_DIFFERS)
        pairs.append((ours, reference))
    return pairs


def _model(side: str, device: torch.device) -> zoo.ZooModel:
    """The task's default encoder + CTC head (``ours``), or a reference backbone with the same head."""
    torch.manual_seed(0)
    if side == "wav2vec2":
        name, args = "torchaudio/wav2vec2_base", {}
    else:
        ours = zoo.create_backbone(ENCODER, **BACKBONE_DEFAULTS)
        if side == "ours":
            name, args = ENCODER, BACKBONE_DEFAULTS
        else:
            cfg = ours.cfg
            name, args = "torchaudio/conformer", dict(dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                                                      ffn_dim=int(cfg.dim * cfg.mlp_ratio), conv_kernel=cfg.conv_kernel,
                                                      n_mels=cfg.n_mels, dropout=cfg.dropout)
    return zoo.create_model(name, "ctc", backbone_args=args, **HEAD_DEFAULTS.get("ctc", {})).to(device)


def _waves(batch: int, seconds: float, device: torch.device) -> dict[str, torch.Tensor]:
    """Random waveforms, full-length mask and random character targets of plausible length."""
    generator = torch.Generator().manual_seed(0)
    samples = int(seconds * 16000)
    units = max(1, int(seconds * CHARS_PER_SECOND))
    return {"inputs": (0.1 * torch.randn(batch, samples, generator=generator)).to(device),
            "mask": torch.ones(batch, samples, dtype=torch.bool, device=device),
            "targets": torch.randint(1, 29, (batch, units), generator=generator).to(device),
            "target_mask": torch.ones(batch, units, dtype=torch.bool, device=device)}


def _encoder(model: zoo.ZooModel) -> Callable[[torch.Tensor, torch.Tensor], Features]:
    """Log-mel (B, T, M) + frame mask -> Features, through the subsampling and the blocks only."""
    backbone = model.backbone
    if hasattr(backbone, "encode_features"):
        return backbone.encode_features

    def conformer(feats: torch.Tensor, mask: torch.Tensor) -> Features:
        x, step_mask = backbone.subsample(feats, mask)  # (B, T', D)
        return Features(backbone.conformer(x, step_mask.sum(dim=1))[0], step_mask)

    return conformer


def _run(model: zoo.ZooModel, mode: str, forward: Callable[[], dict[str, torch.Tensor]],
         batch: dict[str, Any]) -> Callable[[], Any]:
    """Training: an optimizer step on the CTC loss. Inference: forward + greedy decoding."""
    return mode_step(model, mode, lambda: model.loss(forward(), batch)["loss"], lambda: model.decode(forward()))


def encoder_workload(side: str, mode: str, device: torch.device, compile: bool | str, seconds: float,
                     batch: int) -> Workload:
    """Subsampling + blocks + CTC on precomputed log-mel features (``ours`` or ``conformer``)."""
    model = _model(side, device)
    data = _waves(batch, seconds, device)
    with torch.no_grad():
        feats, frame_mask = model.backbone.frontend(data["inputs"], data["mask"])  # (B, T, M)
    encode = maybe_compile(_encoder(model), compile)
    step = _run(model, mode, lambda: model.head(encode(feats, frame_mask), data), data)
    name = f"zoo {ENCODER} + CTC" if side == "ours" else "torchaudio Conformer + CTC"
    dim = model.head.proj.in_features
    layers = len(model.backbone.conformer.conformer_layers) if side == "conformer" else model.backbone.cfg.depth
    extra = f"{feats.shape[1]} log-mel frames, dim {dim}, {layers} layers"
    return Workload(f"asr {mode}, log-mel in ({name})", "audio seconds", batch * seconds, step, model, mode, batch,
                    shape_text(batch, seconds, extra),
                    functools.partial(encoder_workload, side, mode, device, compile, seconds))


def frontend_workload(device: torch.device, compile: bool | str, seconds: float, batch: int) -> Workload:
    """Our log-mel front end on waveforms (inference), the part the encoder pair leaves out."""
    model = _model("ours", device).eval()
    data = _waves(batch, seconds, device)
    frontend = maybe_compile(model.backbone.frontend, compile)
    cfg = model.backbone.cfg
    return Workload("asr log-mel front end (zoo)", "audio seconds", batch * seconds,
                    lambda: frontend(data["inputs"], data["mask"]), model.backbone.frontend, "inference", batch,
                    shape_text(batch, seconds, f"{cfg.n_mels} mels, hop {cfg.hop}"),
                    functools.partial(frontend_workload, device, compile, seconds))


def whole_workload(side: str, mode: str, device: torch.device, compile: bool | str, seconds: float,
                   batch: int) -> Workload:
    """The whole model on waveforms: ``ours`` or ``wav2vec2`` (torchaudio wav2vec2_base), same CTC head."""
    model = _model(side, device)
    if mode == "inference":
        _fold_weight_norm(model)
    data = _waves(batch, seconds, device)
    net = maybe_compile(model, compile)
    step = _run(model, mode, lambda: net(data), data)
    name = f"zoo {ENCODER} + CTC" if side == "ours" else "torchaudio wav2vec2_base + CTC"
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return Workload(f"asr {mode}, waveform in ({name})", "audio seconds", batch * seconds, step, model, mode, batch,
                    shape_text(batch, seconds, f"{params:.1f}M parameters"),
                    functools.partial(whole_workload, side, mode, device, compile, seconds))


def _fold_weight_norm(model: nn.Module) -> None:
    """Replace weight-norm parametrizations (wav2vec2's positional convolution) by their weights, as
    deployed inference does; parametrized weights also break FLOP counting under inference mode."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def shape_text(batch: int, seconds: float, extra: str) -> str:
    """The configuration column of a row."""
    return f"B={batch} x {seconds:g} s, {extra}"
