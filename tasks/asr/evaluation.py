"""Transcribing audio with any ASR model (CTC or attention decoding) and scoring it with jiwer."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import jiwer
import torch

from tasks.asr.audio import SAMPLE_RATE, collate_audio
from tasks.asr.formats import normalize_text
from tasks.asr.units import ids_to_text
from tasks.engine.batching import length_sorted_batches

UNITS_PER_SECOND = 25   # attention decoding stops after this many units per second of audio (+ a margin)


@torch.no_grad()
def transcribe(model: torch.nn.Module, load: Callable[[int], torch.Tensor], lengths: list[int],
               batch_size: int = 16, precision: str = "fp32", beams: int = 1,
               max_new_tokens: int | None = None, **generation: Any) -> list[str]:
    """Transcripts of ``len(lengths)`` waveforms, ``load(i)`` giving the i-th (S,) at 16 kHz.

    Batches group similar lengths (``lengths`` in samples). A head with the step protocol
    (seq2seq) decodes through ``model.generate`` with ``generation`` options and
    ``max_new_tokens`` (default: sized from the longest clip); a CTC head decodes its frame
    scores, greedily or by prefix beam search (``beams``).
    """
    model.eval()
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext())
    texts = [""] * len(lengths)
    for batch_ids in length_sorted_batches(lengths, batch_size):
        batch = collate_audio([{"audio": load(i), "text": ""} for i in batch_ids])
        batch = {"inputs": batch["inputs"].to(device), "mask": batch["mask"].to(device)}
        with autocast:
            if hasattr(model.head, "init_state"):
                budget = max_new_tokens or int(batch["inputs"].shape[1] / SAMPLE_RATE * UNITS_PER_SECOND) + 10
                rows = model.generate(batch, beams=beams, max_new_tokens=budget, **generation)
            else:
                rows = model.head.decode(model(batch), beams=beams)
        for i, ids in zip(batch_ids, rows):
            texts[i] = ids_to_text(model, ids)
    return texts


def error_rates(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus ``wer`` and ``cer`` (jiwer: edits / reference words or characters) on normalised text."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} transcripts for {len(references)} references")
    if not references:
        raise ValueError("no utterances to score")
    hyps = [normalize_text(h) for h in hypotheses]
    refs = [normalize_text(r) for r in references]
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise ValueError(f"reference {empty[0]} is empty after normalisation")
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}
