"""`zoo explain asr`: which frames of the log-mel spectrogram the transcript rests on.

The clip is transcribed (greedy, or ``--beams``); the score is the log-probability the model gives
that transcript (CTC: ``-ctc_loss`` over all alignments; attention decoding: the sum of its tokens'
log-probabilities, EOS included). Its attributions to the normalised log-mel features the encoder
reads are computed by integrated gradients from the all-zero (per-bin mean) spectrogram (default;
captum ``IntegratedGradients``) or gradient x input (``InputXGradient``). The picture shows the
spectrogram, the attribution map and the attribution per frame (sum of |values| over mel bins).
Needs a backbone with the zoo's log-mel front end (``frontend`` + ``encode_features``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from heads.ctc import BLANK
from heads.seq2seq import IGNORE
from tasks.asr.audio import SAMPLE_RATE, collate_audio, load_audio
from tasks.asr.evaluation import transcribe
from tasks.asr.units import encode_targets
from tasks.engine.attributions import METHODS, input_attributions
from tasks.engine.explain_plots import heading, output_path, save_spectrogram_saliency
from tasks.engine.flags import POSITIVE_INT
from zoo.errors import ZooError

IG_STEPS = 64   # CTC scores bend more along the path than a classifier's logit: twice the default steps

__all__ = ["METHODS", "add_arguments", "explain_inputs", "transcript_log_prob"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--beams``: the beam width of the transcript that is explained."""
    parser.add_argument("--beams", type=POSITIVE_INT, default=1, help="beam search width of the transcript")


def explain_inputs(model: torch.nn.Module, inputs: Sequence[str], method: str, out: Path,
                   beams: int = 1) -> list[dict[str, Any]]:
    """Per audio file: ``prediction`` (the transcript), ``score`` (its log-probability), ``attributions``
    (frames x mel bins), ``frame_saliency`` (per frame), ``delta`` for integrated gradients, ``files``."""
    backbone = model.backbone
    if not (hasattr(backbone, "frontend") and hasattr(backbone, "encode_features")):
        raise ZooError(f"`zoo explain asr` needs the zoo's log-mel speech encoder; backbone "
                       f"{backbone.zoo_spec['name']!r} reads raw waveforms")
    rate = model.preprocessing.get("sample_rate", SAMPLE_RATE)
    device = next(model.parameters()).device
    results = []
    for number, path in enumerate(inputs):
        wave = load_audio(path, rate)                                                        # (S,)
        text = transcribe(model, lambda i: wave, [wave.shape[0]], beams=beams)[0]
        batch = collate_audio([{"audio": wave, "text": text}])
        with torch.no_grad():
            feats, frame_mask = backbone.frontend(batch["inputs"].to(device), batch["mask"].to(device))  # (1, T, M)
        targets, target_mask = (t.to(device) for t in encode_targets(model, [text]))          # (1, L)

        def score(features: torch.Tensor) -> torch.Tensor:
            rows = features.shape[0]                                  # captum stacks integration steps
            mask = None if frame_mask is None else frame_mask.expand(rows, -1)
            expanded = {"targets": targets.expand(rows, -1), "target_mask": target_mask.expand(rows, -1)}
            outputs = model.head(backbone.encode_features(features, mask), expanded)
            return transcript_log_prob(outputs, expanded)            # (rows,)

        attributions, delta = input_attributions(score, feats, None, method, steps=IG_STEPS)
        with torch.no_grad():
            log_prob = float(score(feats)[0])
        saliency = attributions[0].float().cpu()                      # (T, M)
        title = heading(repr(text), f"log p = {log_prob:.2f}", method.replace("_", " ") + " on the log-mel")
        picture = save_spectrogram_saliency(feats[0].cpu().numpy(), saliency.numpy(), title,
                                            output_path(out, number, Path(path)),
                                            frame_seconds=backbone.frontend.hop / rate)
        results.append({"prediction": text, "score": log_prob, "score_name": "log p", "method": method,
                        "attributions": saliency.tolist(), "frame_saliency": saliency.abs().sum(dim=1).tolist(),
                        "delta": None if delta is None else float(delta[0]), "files": [str(picture)]})
    return results


def transcript_log_prob(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) log-probability of ``batch["targets"]`` under head ``outputs``: CTC (all alignments) when the
    outputs carry frame ``lengths``, else the teacher-forced sum over the seq2seq head's ``labels``."""
    log_probs = outputs["logits"].float().log_softmax(dim=-1)                                # (B, T, V)
    if "labels" in outputs:
        labels = outputs["labels"]                                                           # (B, L+1)
        picked = log_probs.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return (picked * (labels != IGNORE)).sum(dim=1)
    lengths = batch["target_mask"].sum(dim=1)
    return -F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], outputs["lengths"], lengths, blank=BLANK,
                       reduction="none", zero_infinity=True)
