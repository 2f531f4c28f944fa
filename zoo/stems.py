"""Input stems: patch embeddings (plain, convolutional, shifted-patch) and the audio front end (log-mel + 4x subsampling).

Every image stem maps (B, C, H, W) images to ((B, N, D) tokens, (H/p, W/p) grid) and takes
``region``, (B, H, W) bool True on the pixels of each image's whole patches, or None (all real):
stems whose outputs see neighbouring patches zero everything outside it, so a padded batch gives
each image the tokens it gets alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from zoo.errors import ZooError


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided convolution: (B, C, H, W) -> (B, N, D)."""

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor, region: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """``region`` plays no part: a patch sees only its own pixels."""
        x = self.proj(images)  # (B, D, H/p, W/p)
        grid = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), grid  # (B, N, D)


def _whole_patches(images: torch.Tensor, region: torch.Tensor | None, patch_size: int) -> torch.Tensor:
    """``images`` cut to whole patches (B, C, H//p*p, W//p*p), zero outside ``region`` when given."""
    height, width = images.shape[2] // patch_size * patch_size, images.shape[3] // patch_size * patch_size
    images = images[:, :, :height, :width]
    if region is not None:
        images = images * region[:, None, :height, :width].to(images.dtype)
    return images


class ConvStem(nn.Module):
    """Early convolutions (Xiao et al. 2021): log2(p) 3x3 stride-2 conv + BatchNorm + GELU layers, channels
    doubling up to ``dim``, then a 1x1 projection to ``dim``; total stride ``patch_size`` (a power of 2).

    Between layers, pixels outside ``region`` are zeroed again, so padding never reaches a real patch.
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        layers = patch_size.bit_length() - 1
        if patch_size < 2 or patch_size != 1 << layers:
            raise ZooError(f"stem 'conv' needs a patch_size that is a power of 2 (2, 4, 8, 16...), got {patch_size}; "
                           "set --backbone-args '{\"patch_size\": ...}' or use stem 'patch'")
        self.patch_size = patch_size
        widths = [max(8, dim >> (layers - 1 - i)) for i in range(layers)]
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())
            for c_in, c_out in zip([in_chans, *widths[:-1]], widths))
        self.proj = nn.Conv2d(widths[-1], dim, kernel_size=1)

    def forward(self, images: torch.Tensor, region: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        x = _whole_patches(images, None, self.patch_size)  # (B, C, H', W'); the loop below applies ``region``
        keep = None if region is None else region[:, None, : x.shape[2], : x.shape[3]].to(x.dtype)  # (B, 1, H', W')
        for conv in self.convs:
            x = conv(x if keep is None else x * keep)  # (B, c, H'/2, W'/2)
            keep = None if keep is None else keep[:, :, ::2, ::2]
        x = self.proj(x)  # (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])  # (B, N, D)


class ShiftedPatchEmbed(nn.Module):
    """Shifted patch tokenization (Lee et al. 2021): the image and its four diagonal half-patch shifts
    (zero-filled) stacked on channels, cut into p x p patches, LayerNorm, then a linear to ``dim``."""

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        if patch_size < 2:
            raise ZooError(f"stem 'spt' shifts by half a patch and needs patch_size >= 2, got {patch_size}")
        self.patch_size, self.shift = patch_size, patch_size // 2
        features = 5 * in_chans * patch_size * patch_size
        self.norm = nn.LayerNorm(features)
        self.proj = nn.Linear(features, dim)

    def forward(self, images: torch.Tensor, region: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        x = _whole_patches(images, region, self.patch_size)  # (B, C, H', W')
        batch, chans, height, width = x.shape
        s, p = self.shift, self.patch_size
        padded = F.pad(x, (s, s, s, s))  # (B, C, H' + 2s, W' + 2s)
        # content moved by (dy, dx): out[y, x] = in[y - dy, x - dx]
        shifted = [padded[:, :, s - dy: s - dy + height, s - dx: s - dx + width] for dy, dx in
                   ((-s, -s), (-s, s), (s, -s), (s, s))]
        x = torch.cat([x, *shifted], dim=1)  # (B, 5C, H', W')
        grid = (height // p, width // p)
        patches = x.reshape(batch, 5 * chans, grid[0], p, grid[1], p).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(batch, grid[0] * grid[1], 5 * chans * p * p)  # (B, N, 5C*p*p)
        return self.proj(self.norm(patches)), grid  # (B, N, D)


class LogMel(nn.Module):
    """Log-mel filterbank features computed on the device, normalised per utterance over real frames.

    ``center=False`` framing means a frame only sees its own window of samples, so padding
    a waveform never changes the features of its real frames. A batch shorter than one
    window is zero-padded to one window: one frame, as :meth:`frames` counts it.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, hop: int = 160, n_mels: int = 80) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop,
                                                        n_mels=n_mels, center=False, power=2.0)
        for module in self.mel.modules():  # window and filterbank are fixed: not checkpoint state
            for name, buffer in list(module._buffers.items()):
                module.register_buffer(name, buffer.clone(), persistent=False)

    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Number of frames for each number of samples (B,) long."""
        return torch.div(samples - self.n_fft, self.hop, rounding_mode="floor").clamp(min=0) + 1

    def forward(self, waves: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """waves: (B, S) float -> (log-mel (B, T, n_mels), frame mask (B, T) or None)."""
        if waves.shape[1] < self.n_fft:
            waves = F.pad(waves, (0, self.n_fft - waves.shape[1]))  # (B, n_fft)
        with torch.autocast(waves.device.type, enabled=False):
            feats = self.mel(waves.float()).clamp(min=1e-10).log().transpose(1, 2)  # (B, T, M)
        if mask is None:
            frame_mask = None
            weights = torch.ones(feats.shape[:2], device=feats.device)
        else:
            counts = self.frames(mask.sum(dim=1))
            frame_mask = torch.arange(feats.shape[1], device=feats.device)[None] < counts[:, None]  # (B, T)
            weights = frame_mask.float()
        denom = weights.sum(dim=1).clamp(min=1.0)[:, None, None]  # (B, 1, 1)
        w = weights[..., None]  # (B, T, 1)
        mean = (feats * w).sum(dim=1, keepdim=True) / denom  # per mel bin, (B, 1, M)
        var = (((feats - mean) ** 2) * w).sum(dim=1, keepdim=True) / denom
        feats = (feats - mean) / (var + 1e-5).sqrt()
        if frame_mask is not None:
            feats = feats * w
        return feats, frame_mask


def spec_augment(feats: torch.Tensor, mask: torch.Tensor | None, freq_masks: int, freq_width: int,
                 time_masks: int, time_ratio: float) -> torch.Tensor:
    """SpecAugment (torch's global generator): zero ``freq_masks`` bands of up to ``freq_width`` mel bins
    and ``time_masks`` spans of up to ``time_ratio`` of each utterance's real length, per utterance.

    feats: (B, T, M) log-mel; mask: (B, T) True on real frames (None: all real) -> (B, T, M).
    """
    by_mel = feats.transpose(1, 2)  # (B, M, T), torchaudio's (..., freq, time)
    for _ in range(freq_masks):
        # torchaudio draws a width of floor(U * param) bins, so param = freq_width + 1 reaches freq_width itself
        by_mel = torchaudio.functional.mask_along_axis_iid(by_mel, freq_width + 1, 0.0, axis=1)
    feats = by_mel.transpose(1, 2)  # (B, T, M)
    # Time masks stay ours: torchaudio's TimeMasking bounds a span by p x the padded batch length and may put it
    # on padding, while SpecAugment's p bounds it by each utterance's own length; speed perturbation alone makes
    # the clips of one batch differ by up to a third, so torchaudio's would mask short clips harder and unevenly.
    batch, steps, _ = feats.shape
    lengths = mask.sum(dim=1) if mask is not None else torch.full((batch,), steps, device=feats.device)
    time_idx = torch.arange(steps, device=feats.device)
    keep = torch.ones(batch, steps, dtype=torch.bool, device=feats.device)
    for _ in range(time_masks):
        max_width = (lengths.float() * time_ratio).long()
        width = (torch.rand(batch, device=feats.device) * (max_width + 1)).long()
        start = (torch.rand(batch, device=feats.device) * (lengths - width).clamp(min=1)).long()
        keep &= (time_idx[None] < start[:, None]) | (time_idx[None] >= (start + width)[:, None])  # (B, T)
    return feats * keep[:, :, None].to(feats.dtype)


class ConvSubsampling(nn.Module):
    """Two 3x3 stride-2 convolutions over (time, mel): 4x fewer frames, then a linear to ``dim``.

    Fewer than ``MIN_FRAMES`` frames (a clip under ~85 ms) are zero-padded to one output step,
    which the mask marks as padding (:meth:`lengths` gives 0 steps for them).
    """

    MIN_FRAMES = 7  # frames the two convolutions need for one output step

    def __init__(self, n_mels: int, dim: int, channels: int | None = None) -> None:
        super().__init__()
        channels = channels or dim
        self.conv = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU())
        mel_out = ((n_mels - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * mel_out, dim)

    @staticmethod
    def lengths(frames: torch.Tensor) -> torch.Tensor:
        """Output steps for input frame counts (each conv: (L - 3) // 2 + 1)."""
        once = torch.div(frames - 3, 2, rounding_mode="floor") + 1
        return (torch.div(once - 3, 2, rounding_mode="floor") + 1).clamp(min=0)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """feats: (B, T, M) -> ((B, T', D), mask (B, T') or None)."""
        if feats.shape[1] < self.MIN_FRAMES:
            feats = F.pad(feats, (0, 0, 0, self.MIN_FRAMES - feats.shape[1]))  # (B, MIN_FRAMES, M)
        x = self.conv(feats[:, None])  # (B, C, T', M')
        batch, channels, steps, mels = x.shape
        x = self.out(x.permute(0, 2, 1, 3).reshape(batch, steps, channels * mels))  # (B, T', D)
        if mask is None:
            return x, None
        counts = self.lengths(mask.sum(dim=1))
        return x, torch.arange(steps, device=x.device)[None] < counts[:, None]
