"""Prefix resolvers: ``timm/<name>`` (any timm model) and ``torchaudio/<name>`` (speech models).

Nothing here reaches the network: weights come only from local files, and the wrapped
constructors run with the Hugging Face hub offline and torch.hub's downloader refused.
"""
from __future__ import annotations

import fnmatch
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError
from zoo.features import Features
from zoo.registry import BACKBONES


@contextmanager
def offline() -> Iterator[None]:
    """Inside the block nothing downloads: the HF hub is offline, ``torch.hub`` refuses URLs."""
    import huggingface_hub.constants as hub
    import torch.hub

    def refuse(url: str, *args: Any, **kwargs: Any) -> None:
        raise ZooError(f"zoo never downloads at run time (asked for {url}); download the file once "
                       f"and pass its local path instead")

    saved = hub.HF_HUB_OFFLINE, torch.hub.download_url_to_file
    hub.HF_HUB_OFFLINE, torch.hub.download_url_to_file = True, refuse
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, torch.hub.download_url_to_file = saved


class TimmBackbone(nn.Module):
    """Any timm model as an image backbone: multi-scale ``maps`` from ``features_only``.

    ``tokens`` are the last map's positions flattened (B, H*W, C). Weights: random by
    default; ``checkpoint_path`` loads a local weights file. ``pretrained=True`` (a download)
    is refused at once.
    """

    modality = "image"
    causal = False
    padding_sensitive = True

    def __init__(self, model_name: str, checkpoint_path: str | None = None, **kwargs: object) -> None:
        super().__init__()
        import timm

        extra: dict = dict(kwargs)
        if extra.pop("pretrained", False):
            raise ZooError(f"timm/{model_name}: pretrained=True would download weights, and zoo never downloads at "
                           f"run time; download them once and pass checkpoint_path=/path/to/weights.safetensors")
        if checkpoint_path:
            if not Path(checkpoint_path).is_file():
                raise FileNotFoundError(f"timm/{model_name}: checkpoint_path {checkpoint_path} is not a file")
            extra.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(checkpoint_path)))
        self.model_name = model_name
        with offline():
            self.body = timm.create_model(model_name, features_only=True, **extra)
        self.dim = self.body.feature_info.channels()[-1]
        cfg = getattr(self.body, "pretrained_cfg", {}) or {}
        self.mean, self.std = cfg.get("mean"), cfg.get("std")

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, *, cache: None = None) -> Features:
        """inputs: (B, 3, H, W); mask: (B, H, W) bool or None."""
        maps = list(self.body(inputs))
        last = maps[-1]  # (B, C, h, w)
        tokens = last.flatten(2).transpose(1, 2)  # (B, h*w, C)
        token_mask = None
        if mask is not None:
            token_mask = F.interpolate(mask[:, None].float(), size=last.shape[-2:], mode="nearest")[:, 0] > 0
            token_mask = token_mask.flatten(1)
        return Features(tokens, token_mask, maps)


class Wav2Vec2Backbone(nn.Module):
    """A torchaudio ``Wav2Vec2Model`` factory (wav2vec2, HuBERT, WavLM) on 16 kHz waveforms."""

    modality = "audio"
    causal = False
    padding_sensitive = True

    def __init__(self, factory: Callable[..., nn.Module], **kwargs: object) -> None:
        super().__init__()
        with offline():
            self.model = factory(**kwargs)
        self.dim = self.model.encoder.feature_projection.projection.out_features

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, *, cache: None = None) -> Features:
        lengths = mask.sum(dim=1) if mask is not None else None
        x, out_lengths = self.model(inputs, lengths)  # (B, T, D)
        out_mask = None
        if out_lengths is not None:
            out_mask = torch.arange(x.shape[1], device=x.device)[None] < out_lengths[:, None]
        return Features(x, out_mask)


class TorchaudioConformerBackbone(nn.Module):
    """Our log-mel front end + 4x subsampling feeding ``torchaudio.models.Conformer``."""

    modality = "audio"
    causal = False
    padding_sensitive = True

    def __init__(self, dim: int = 144, depth: int = 4, heads: int = 4, ffn_dim: int | None = None,
                 conv_kernel: int = 15, n_mels: int = 80, dropout: float = 0.1) -> None:
        super().__init__()
        import torchaudio

        from zoo.stems import ConvSubsampling, LogMel

        self.dim = dim
        self.frontend = LogMel(n_mels=n_mels)
        self.subsample = ConvSubsampling(n_mels, dim)
        self.conformer = torchaudio.models.Conformer(dim, heads, ffn_dim or 4 * dim, depth, conv_kernel, dropout)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, *, cache: None = None) -> Features:
        feats, frame_mask = self.frontend(inputs, mask)
        x, step_mask = self.subsample(feats, frame_mask)
        lengths = step_mask.sum(dim=1) if step_mask is not None else torch.full(
            (x.shape[0],), x.shape[1], device=x.device)
        x, _ = self.conformer(x, lengths)
        return Features(x, step_mask)


_TORCHAUDIO_PATTERNS = ("wav2vec2_*", "hubert_*", "wavlm_*")


def _resolve_timm(name: str) -> Callable[..., nn.Module]:
    import timm

    if not timm.list_models(name) and not timm.is_model(name):
        raise KeyError(f"unknown timm model {name!r} (see `zoo list backbones 'timm/*'`)")
    return lambda **kwargs: TimmBackbone(name, **kwargs)


def _resolve_torchaudio(name: str) -> Callable[..., nn.Module]:
    import torchaudio

    if name == "conformer":
        return TorchaudioConformerBackbone
    factory = getattr(torchaudio.models, name, None)
    if factory is None or not any(fnmatch.fnmatchcase(name, p) for p in _TORCHAUDIO_PATTERNS):
        raise KeyError(f"unknown torchaudio speech model {name!r}; choose from {_torchaudio_names('*')}")
    return lambda **kwargs: Wav2Vec2Backbone(factory, **kwargs)


def _torchaudio_names(pattern: str) -> list[str]:
    import torchaudio

    names = [n for n in dir(torchaudio.models) if any(fnmatch.fnmatchcase(n, p) for p in _TORCHAUDIO_PATTERNS)]
    return [n for n in names + ["conformer"] if fnmatch.fnmatchcase(n, pattern)]


def _timm_names(pattern: str) -> list[str]:
    import timm

    return timm.list_models(pattern)


# Padding changes their outputs on real positions (convolutions see it, squeeze-excite and group
# norm average over it), so evaluation batches their inputs by size: see ``padding_sensitive``.
BACKBONES.add_resolver("timm", _resolve_timm, _timm_names, padding_sensitive=True)
BACKBONES.add_resolver("torchaudio", _resolve_torchaudio, _torchaudio_names, padding_sensitive=True)
