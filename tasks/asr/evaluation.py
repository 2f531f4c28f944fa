"""Transcribing audio with any ASR model (CTC or attention decoding) and scoring it with jiwer."""
from __future__ import annotations

from typing import Any, Callable

import jiwer
import torch

from heads.joint_decoding import joint_generate
from tasks.asr.audio import SAMPLE_RATE, collate_audio
from tasks.asr.formats import normalize_text
from tasks.asr.units import ids_to_text
from tasks.engine.batching import in_order, length_sorted_batches
from tasks.engine.evaluation import EvalOptions, run_batches
from zoo.errors import ZooError
from zoo.multihead import MultiHeadModel

UNITS_PER_SECOND = 25   # attention decoding stops after this many units per second of audio (+ a margin)


def unit_budget(samples: int) -> int:
    """New units attention decoding may emit for a batch of ``samples`` (16 kHz) long clips."""
    return int(samples / SAMPLE_RATE * UNITS_PER_SECOND) + 10


def transcribe(model: torch.nn.Module, load: Callable[[int], torch.Tensor], lengths: list[int],
               batch_size: int = 16, options: EvalOptions = EvalOptions(), beams: int = 1,
               max_new_tokens: int | None = None, ctc_weight: float | None = None, **generation: Any) -> list[str]:
    """Transcripts of ``len(lengths)`` waveforms, ``load(i)`` giving the i-th (S,) at 16 kHz.

    Batches group similar lengths (``lengths`` in samples). A head with the step protocol
    (seq2seq) decodes through ``model.generate`` with ``generation`` options and
    ``max_new_tokens`` (default: sized from the longest clip); a CTC head decodes its frame
    scores, greedily or by prefix beam search (``beams``). A hybrid model (heads ``ctc`` and ``seq2seq``)
    decodes by its CTC head, or with ``ctc_weight`` (else ``options.ctc_weight``) by joint CTC/attention
    beam search (:func:`heads.joint_decoding.joint_generate`). Decoding runs under ``options``' autocast.
    """
    weight = options.ctc_weight if ctc_weight is None else ctc_weight
    hybrid = isinstance(model, MultiHeadModel)
    writer = model.single_head("ctc") if hybrid else model   # the heads share one tokenizer
    if hybrid and weight is None:
        model = writer
    elif weight is not None and not hybrid:
        raise ZooError("--decode-ctc-weight: joint decoding needs a hybrid model (`zoo train asr --head hybrid`)")

    def batch_of(ids: list[int]) -> dict[str, torch.Tensor]:
        batch = collate_audio([{"audio": load(i), "text": ""} for i in ids])
        return {"inputs": batch["inputs"], "mask": batch["mask"]}

    def decode(batch: dict[str, torch.Tensor]) -> list[list[int]]:
        budget = max_new_tokens or unit_budget(batch["inputs"].shape[1])   # attention decoding's new units
        if hybrid and weight is not None:
            return joint_generate(model, batch, weight, beams=beams, max_new_tokens=budget, **generation)
        if hasattr(model.head, "init_state"):
            return model.generate(batch, beams=beams, max_new_tokens=budget, **generation)
        return model.head.decode(model(batch), beams=beams)

    rows = in_order(run_batches(model, length_sorted_batches(lengths, batch_size), batch_of, decode, options))
    return [ids_to_text(writer, ids) for ids in rows]


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
