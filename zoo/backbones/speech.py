"""Speech encoder: log-mel front end on the device, SpecAugment, 4x conv subsampling, (Conformer) blocks."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from zoo.features import Features
from zoo.layers.attention import attention_mask
from zoo.layers.block import BlockConfig
from zoo.layers.position import RotaryEmbedding
from zoo.layers.stack import Stack
from zoo.registry import BACKBONES
from zoo.stems import ConvSubsampling, LogMel, spec_augment


@dataclass(frozen=True)
class SpeechConfig:
    """Architecture of the speech encoder."""

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop: int = 160
    dim: int = 144
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    conformer: bool = True
    conv_kernel: int = 15
    dropout: float = 0.1
    spec_augment: bool = True    # active in training mode only
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_ratio: float = 0.05
    layer_heads: tuple[int, ...] | None = None   # per-layer head counts of a pruned model (None: ``heads``)
    layer_mlp: tuple[int, ...] | None = None     # per-layer feed-forward widths of a pruned model
    drop_path: float = 0.0       # stochastic depth of the last block (0 at the first, linear between)


class SpeechEncoder(nn.Module):
    """Waveforms (B, S) at 16 kHz -> Features (B, T/4 frames of 10 ms, D) with a frame mask."""

    modality = "audio"
    causal = False
    padding_sensitive = False   # masked convolutions and attention: a padded batch equals one by one

    def __init__(self, cfg: SpeechConfig) -> None:
        super().__init__()
        self.cfg, self.dim = cfg, cfg.dim
        self.frontend = LogMel(cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels)
        self.subsample = ConvSubsampling(cfg.n_mels, cfg.dim)
        self.rope = RotaryEmbedding(cfg.dim // cfg.heads)
        block = BlockConfig(cfg.dim, cfg.heads, cfg.mlp_ratio, dropout=cfg.dropout,
                            conformer=cfg.conformer, conv_kernel=cfg.conv_kernel, drop_path=cfg.drop_path)
        self.stack = Stack(block, cfg.depth, cfg.layer_heads, cfg.layer_mlp)
        self.norm = nn.LayerNorm(cfg.dim)

    def output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        """Encoder steps for waveform lengths in samples (B,) -> (B,)."""
        return ConvSubsampling.lengths(self.frontend.frames(samples))

    def encode_features(self, feats: torch.Tensor, mask: torch.Tensor | None) -> Features:
        """Log-mel (B, T, M) + frame mask -> Features after subsampling and blocks."""
        x, step_mask = self.subsample(feats, mask)  # (B, T', D)
        positions = torch.arange(x.shape[1], device=x.device)
        attn_mask, _ = attention_mask(step_mask, x.shape[1], causal=False)
        x = self.stack(x, mask=attn_mask, pad_mask=step_mask, rope=self.rope, positions=positions)
        return Features(self.norm(x), step_mask)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, *, cache: None = None) -> Features:
        """inputs: (B, S) waveforms; mask: (B, S) bool True = real sample."""
        feats, frame_mask = self.frontend(inputs, mask)
        if self.training and self.cfg.spec_augment:
            feats = spec_augment(feats, frame_mask, self.cfg.freq_masks, self.cfg.freq_width,
                                 self.cfg.time_masks, self.cfg.time_ratio)
        return self.encode_features(feats, frame_mask)


def _register(name: str, defaults: dict) -> None:
    @BACKBONES.register(name, modality="audio", causal=False, padding_sensitive=False,
                        input="waveforms (B, S) at 16 kHz", sample_rate=16000, config=asdict(SpeechConfig(**defaults)))
    def build(**overrides: object) -> SpeechEncoder:
        return SpeechEncoder(SpeechConfig(**{**defaults, **overrides}))

    build.__doc__ = f"Speech encoder {name}: {defaults}"


_register("speech_encoder_tiny", dict(dim=144, depth=4, heads=4))
_register("speech_encoder_small", dict(dim=256, depth=8, heads=4))
