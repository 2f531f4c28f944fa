"""The audio pipeline of the ASR task: read, check, resample, write and collate waveforms.

Files are read with soundfile (wav, flac, ogg, mp3: whatever libsndfile reads); torchaudio
2.11 has no file I/O and is used only for resampling. Every waveform leaves this module
as mono float32 at 16 kHz. A missing file raises FileNotFoundError; a file that cannot be
used (empty, header-only, corrupt, too short for a speech model, absurdly long, non-finite
samples) raises :class:`AudioError` (a :class:`~zoo.errors.ZooError`) naming the file and the
reason, so a data set can skip it with a warning or a user sees what is wrong.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile
import torch
import torchaudio

from zoo.errors import ZooError

SAMPLE_RATE = 16000
# Shortest usable clip: the default speech front end (25 ms windows every 10 ms, then 4x
# subsampling by two 3-wide convolutions) needs 1,360 samples (85 ms) for one encoder step.
MIN_SECONDS = 0.1


class AudioError(ZooError):
    """An audio file that cannot be used; the message names the file and the reason."""


def probe_audio(path: str | Path, max_seconds: float = 60.0, min_seconds: float = MIN_SECONDS) -> float:
    """Cheaply check an audio file from its header and return its duration in seconds.

    Raises FileNotFoundError for a missing file and :class:`AudioError` for an unreadable,
    empty (0 frames), too short (under ``min_seconds``) or too long file. Damage past the
    header shows only in :func:`load_audio`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.SoundFileError) as err:
        raise AudioError(f"{path}: unreadable audio ({_reason(err)})") from None
    return check_duration(str(path), info.frames, info.samplerate, max_seconds, min_seconds)


def check_duration(source: str, frames: int, rate: int, max_seconds: float = 60.0,
                   min_seconds: float = MIN_SECONDS) -> float:
    """The duration in seconds of ``frames`` samples at ``rate`` Hz; :class:`AudioError` naming ``source``
    when there are none, or too few or too many for a speech model."""
    if frames <= 0 or rate <= 0:
        raise AudioError(f"{source}: empty audio (0 frames)")
    seconds = frames / rate
    if seconds < min_seconds:
        raise AudioError(f"{source}: {seconds * 1000:.0f} ms long ({frames} samples), shorter than the "
                         f"{min_seconds:g} s a speech model needs; drop the clip or pad it with silence")
    if seconds > max_seconds:
        raise AudioError(f"{source}: {seconds:.1f} s long, over the limit of {max_seconds:g} s")
    return seconds


def in_memory_audio(samples: np.ndarray | torch.Tensor, rate: int, target_rate: int = SAMPLE_RATE,
                    source: str = "audio array") -> torch.Tensor:
    """Samples given in memory (1-D, mono, float in [-1, 1] or int16, at ``rate`` Hz) as float32 (S,) at
    ``target_rate``, checked as files are (:func:`check_duration`, finite values); errors name ``source``."""
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise AudioError(f"sample_rate {rate!r}: expected a positive whole number of samples per second")
    wave = torch.as_tensor(samples).detach().cpu()
    if wave.ndim != 1:
        raise AudioError(f"{source}: samples of shape {tuple(wave.shape)}; pass one channel as a 1-D array")
    if wave.dtype == torch.int16:
        wave = wave.float() / 32768.0
    if not wave.is_floating_point():
        raise AudioError(f"{source}: samples of type {wave.dtype}; pass float samples in [-1, 1] or int16")
    wave = wave.float()
    check_duration(source, wave.numel(), rate)
    if not bool(torch.isfinite(wave).all()):
        raise AudioError(f"{source}: audio holds NaN or infinite samples")
    if rate != target_rate:
        wave = resampler(rate, target_rate)(wave)  # (S,)
    return wave.contiguous()


def load_audio(path: str | Path, target_rate: int = SAMPLE_RATE, max_seconds: float = 60.0,
               min_seconds: float = MIN_SECONDS) -> torch.Tensor:
    """Read an audio file as a mono float32 waveform (S,) at ``target_rate`` Hz.

    Channels are averaged; other sample rates are resampled with torchaudio. The file is
    checked by :func:`probe_audio` first (same limits).
    """
    path = Path(path)
    probe_audio(path, max_seconds, min_seconds)
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (S0, C)
    except (RuntimeError, soundfile.SoundFileError) as err:
        raise AudioError(f"{path}: corrupt audio ({_reason(err)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (header only, no samples)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    wave = torch.from_numpy(data).mean(dim=1)  # (S0,)
    if rate != target_rate:
        wave = resampler(rate, target_rate)(wave)  # (S,)
    return wave.contiguous()


def clips(inputs: Sequence[str | Path | np.ndarray | torch.Tensor], target_rate: int,
          sample_rate: int | None = None) -> tuple[list[int], Callable[[int], torch.Tensor]]:
    """``(lengths, load)`` of audio files or in-memory sample arrays (at ``sample_rate`` Hz, default
    ``target_rate``): each clip's length in samples at ``target_rate`` (files: from their headers) and
    ``load(i)``, the i-th clip as float32 (S,) at ``target_rate`` (arrays are checked and resampled at once)."""
    arrays = {i: in_memory_audio(item, sample_rate or target_rate, target_rate, f"input {i + 1}")
              for i, item in enumerate(inputs) if not isinstance(item, (str, Path))}
    lengths = [len(arrays[i]) if i in arrays else round(probe_audio(item) * target_rate)
               for i, item in enumerate(inputs)]
    return lengths, lambda i: arrays[i] if i in arrays else load_audio(inputs[i], target_rate)


def save_flac(path: str | Path, wave: torch.Tensor, rate: int = SAMPLE_RATE) -> None:
    """Write a mono waveform (S,) in [-1, 1] as 16-bit FLAC (samples beyond ±1 are clipped)."""
    samples = wave.detach().to(torch.float32).clamp(-1.0, 1.0).cpu().numpy()
    soundfile.write(str(path), samples, rate, format="FLAC", subtype="PCM_16")


def collate_audio(samples: list[dict]) -> dict:
    """Pad sample dicts into a batch: ``inputs`` (B, Smax) float, ``mask`` (B, Smax) bool, ``texts``.

    ``mask`` is True on real samples, False on padding (zeros).
    """
    if not samples:
        raise ValueError("collate_audio: empty batch")
    lengths = torch.tensor([s["audio"].shape[0] for s in samples])  # (B,)
    inputs = torch.zeros(len(samples), int(lengths.max()))  # (B, Smax)
    for row, sample in enumerate(samples):
        inputs[row, : sample["audio"].shape[0]] = sample["audio"]
    mask = torch.arange(inputs.shape[1])[None, :] < lengths[:, None]  # (B, Smax)
    return {"inputs": inputs, "mask": mask, "texts": [s["text"] for s in samples]}


@functools.lru_cache(maxsize=16)
def resampler(orig_rate: int, new_rate: int) -> torchaudio.transforms.Resample:
    """A resampler per rate pair: building the windowed-sinc kernel costs several times the filtering."""
    return torchaudio.transforms.Resample(orig_rate, new_rate)


def _reason(err: Exception) -> str:
    """libsndfile's message without soundfile's 'Error opening ...' prefix and file name."""
    text = str(err)
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
