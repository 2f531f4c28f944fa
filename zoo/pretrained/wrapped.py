"""transformers models that stay wrapped: BERT (post-norm), wav2vec2, the Marian and Whisper encoders.

The backbone ``transformers`` holds the model (or its encoder) built with ``from_config`` from the
transformers config stored in our ``config.json`` args, so ``zoo.load`` rebuilds it offline and
fills it from our own ``model.safetensors``. It takes the zoo batch (token ids, or 16 kHz
waveforms with their sample mask) and returns Features: the last hidden state and its mask.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from zoo.backbones.adapters import offline
from zoo.errors import ZooError
from zoo.features import Features
from zoo.model import LoadReport
from zoo.pretrained.weights import UNUSED
from zoo.registry import BACKBONES

NAME = "transformers"
HOP, N_FFT = 160, 400   # Whisper's log-mel framing at 16 kHz


@dataclass(frozen=True)
class Family:
    """How a wrapped transformers family plugs in."""

    modality: str
    encoder_only: bool         # keep ``get_encoder()`` of an encoder-decoder
    padding_sensitive: bool
    build: tuple[tuple[str, Any], ...] = ()   # AutoModel arguments (no pooler: Features are the hidden states)


FAMILIES = {"bert": Family("text", False, False, (("add_pooling_layer", False),)),
            "marian": Family("text", True, False),
            "wav2vec2": Family("audio", False, True), "whisper": Family("audio", True, False)}


@contextmanager
def quiet() -> Iterator[None]:
    """transformers' load reports and progress bars silenced (zoo reports what was loaded)."""
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        transformers.logging.enable_progress_bar()


def _config_object(config: dict[str, Any]) -> Any:
    import transformers

    settings = dict(config)
    return transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)


class TransformersBackbone(nn.Module):
    """A transformers model as a zoo backbone: ``forward(inputs, mask) -> Features``.

    ``model`` is a built module to hold (when loading from a folder); otherwise one is built
    from ``config`` with random weights. ``normalize``: wav2vec2 waveforms are brought to zero
    mean and unit variance over their real samples (the folder's ``do_normalize``).
    """

    causal = False

    def __init__(self, config: dict[str, Any], normalize: bool = False, model: nn.Module | None = None) -> None:
        super().__init__()
        import transformers

        family = FAMILIES[config["model_type"]]
        self.family, self.modality, self.normalize = config["model_type"], family.modality, normalize
        self.padding_sensitive = family.padding_sensitive
        self.hf_config = _config_object(config)
        if model is None:
            with offline(), quiet():
                model = transformers.AutoModel.from_config(self.hf_config, **dict(family.build))
            model = model.get_encoder() if family.encoder_only else model
        self.model = model
        self.dim = int(self.hf_config.hidden_size)
        if self.family == "whisper":
            extractor = transformers.WhisperFeatureExtractor(feature_size=self.hf_config.num_mel_bins)
            self.register_buffer("mel_filters", torch.tensor(extractor.mel_filters, dtype=torch.float32).T,
                                 persistent=False)  # (n_mels, n_fft/2 + 1)
            self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, *, cache: None = None) -> Features:
        """inputs: (B, T) token ids or (B, S) waveforms; mask: (B, T|S) bool True = real."""
        if self.modality == "text":
            out = self.model(input_ids=inputs, attention_mask=None if mask is None else mask.long())
            return Features(out.last_hidden_state, mask)
        waves = inputs.float() if mask is None else inputs.float() * mask
        lengths = mask.sum(dim=1) if mask is not None else torch.full(
            (inputs.shape[0],), inputs.shape[1], device=inputs.device)
        if self.family == "whisper":
            return self._whisper(waves, lengths)
        if self.normalize:
            waves = _normalize(waves, mask)
        use_mask = mask is not None and self.hf_config.feat_extract_norm == "layer"
        out = self.model(waves, attention_mask=mask.long() if use_mask else None).last_hidden_state  # (B, T', D)
        steps = self.model._get_feat_extract_output_lengths(lengths)
        return Features(out, torch.arange(out.shape[1], device=out.device)[None] < steps[:, None])

    def _whisper(self, waves: torch.Tensor, lengths: torch.Tensor) -> Features:
        """Whisper's log-mel of 16 kHz waveforms padded/cut to the encoder's window, then the encoder."""
        samples = self.hf_config.max_source_positions * 2 * HOP
        waves = nn.functional.pad(waves, (0, max(samples - waves.shape[1], 0)))[:, :samples]  # (B, samples)
        with torch.autocast(waves.device.type, enabled=False):   # the spectrum in fp32 under mixed precision
            spectrum = torch.stft(waves, N_FFT, HOP, window=self.window, return_complex=True)[..., :-1].abs() ** 2
            log_mel = (self.mel_filters @ spectrum).clamp(min=1e-10).log10()  # (B, n_mels, frames)
        ceiling = log_mel.amax(dim=(1, 2), keepdim=True)
        log_mel = (torch.maximum(log_mel, ceiling - 8.0) + 4.0) / 4.0
        out = self.model(log_mel).last_hidden_state  # (B, frames / 2, D)
        steps = (torch.div(lengths.clamp(max=samples) + HOP - 1, HOP, rounding_mode="floor") + 1) // 2
        return Features(out, torch.arange(out.shape[1], device=out.device)[None] < steps[:, None])


def _normalize(waves: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero mean, unit variance per waveform over its real samples (wav2vec2's feature extractor)."""
    weights = torch.ones_like(waves) if mask is None else mask.to(waves.dtype)
    count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (waves * weights).sum(dim=1, keepdim=True) / count
    var = (((waves - mean) * weights) ** 2).sum(dim=1, keepdim=True) / count
    return (waves - mean) / (var + 1e-7).sqrt() * weights


@BACKBONES.register(NAME, padding_sensitive=True, input="the wrapped model's: token ids (B, T) or waveforms (B, S)")
def transformers_backbone(config: dict, normalize: bool = False) -> TransformersBackbone:
    """A wrapped transformers model (random weights) from its config dict; ``zoo.load`` fills it."""
    if not isinstance(config, dict) or config.get("model_type") not in FAMILIES:
        raise ZooError(f"backbone {NAME!r}: config must be a transformers config with model_type one of "
                       f"{', '.join(FAMILIES)}")
    return TransformersBackbone(config, normalize)


def load(folder: Path, config: dict[str, Any]) -> tuple[TransformersBackbone, LoadReport]:
    """The wrapped backbone of a transformers folder, its weights read by transformers (safetensors only)."""
    import transformers
    from safetensors import SafetensorError

    family = FAMILIES[config["model_type"]]
    try:
        with offline(), quiet():
            full, info = transformers.AutoModel.from_pretrained(
                folder, use_safetensors=True, local_files_only=True, output_loading_info=True,
                ignore_mismatched_sizes=True, dtype=torch.float32, **dict(family.build))
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as err:
        reason = " ".join(str(err).split())
        raise ZooError(f"{folder}: transformers cannot build the model from this folder ({reason})") from None
    if info["mismatched_keys"]:
        name, stored, built = sorted(info["mismatched_keys"])[0]
        raise ZooError(f"{folder}: tensor {name!r} has shape {tuple(stored)} but the model its config.json "
                       f"describes needs {tuple(built)}; the weights and the config do not belong together")
    kept = full.get_encoder() if family.encoder_only else full
    prefix = next((f"{n}." for n, m in full.named_children() if m is kept), "") if kept is not full else ""
    names = list(kept.state_dict())   # ours are model.<name>; transformers' are <prefix><name>
    dropped = [n for n in full.state_dict() if not n.startswith(prefix)] if prefix else []
    report = LoadReport(loaded=[f"model.{n}" for n in names if prefix + n not in info["missing_keys"]],
                        skipped=sorted(set(info["unexpected_keys"]) | set(dropped)),
                        missing=[f"model.{n}" for n in names if prefix + n in info["missing_keys"]], skip_reason=UNUSED)
    extractor = folder / "preprocessor_config.json"
    normalize = config["model_type"] == "wav2vec2" and extractor.is_file() and bool(
        json.loads(extractor.read_text()).get("do_normalize", False))
    settings = full.config.to_dict()
    backbone = TransformersBackbone(settings, normalize, model=kept)
    backbone.zoo_spec = {"name": NAME, "args": {"config": settings, "normalize": normalize}}
    return backbone, report
