"""Speech recognition as exported graphs; the log-mel front end is inside the graph.

- CTC head: waveforms (B, S) and their mask -> frame ``log_probs`` (B, T, V) and real frame counts
  ``lengths`` (B,); decoding is greedy best-path CTC in numpy (:func:`greedy_ctc`); units are the head's
  alphabet (stored in the sidecar) or the sentencepiece tokenizer copied beside the graph.
- seq2seq head (attention decoding): an encoder graph and a decoder-step graph with a static KV cache
  (:mod:`tasks.engine.seq2seq_export`, as translation), greedy or beam search in numpy
  (:mod:`tasks.engine.onnx_decode`) with the budget of new units ``transcribe`` gives each batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from heads.ctc import BLANK, CTCHead
from heads.seq2seq import Seq2SeqHead
from tasks.asr.audio import SAMPLE_RATE, clips, collate_audio
from tasks.asr.evaluation import unit_budget
from tasks.engine.batching import length_sorted_batches
from tasks.engine.export import Exported, Graph, Traced, refuse_option
from tasks.engine.onnx_decode import check_options, decode
from tasks.engine.seq2seq_export import Seq2SeqStepper, graphs
from zoo.errors import ZooError

TRACED_SECONDS = (0.5, 0.4)    # two clips of different lengths: batch and samples stay dynamic


def graph(model: nn.Module) -> Graph | dict[str, Graph]:
    """CTC log-probabilities and frame counts of padded waveforms, or the seq2seq head's two graphs."""
    if not isinstance(model.head, (CTCHead, Seq2SeqHead)):
        raise ZooError(f"head {model.head.zoo_spec['name']!r}: asr exports the ctc and seq2seq heads; "
                       f"`zoo predict asr` it with --runtime torch")
    rate = model.preprocessing.get("sample_rate", SAMPLE_RATE)
    waves = [torch.randn(round(seconds * rate)) * 0.1 for seconds in TRACED_SECONDS]
    batch = collate_audio([{"audio": w, "text": ""} for w in waves])
    if isinstance(model.head, Seq2SeqHead):
        return graphs(model, batch["inputs"], batch["mask"], {0: "batch", 1: "samples"})

    def outputs(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"log_probs": out["logits"].float().log_softmax(dim=-1), "lengths": out["lengths"]}

    axes = {"inputs": {0: "batch", 1: "samples"}, "mask": {0: "batch", 1: "samples"},
            "log_probs": {0: "batch", 1: "frames"}, "lengths": {0: "batch"}}
    return Graph(Traced(model, outputs), {"inputs": batch["inputs"], "mask": batch["mask"]}, axes,
                 {"alphabet": model.head.alphabet, "blank": BLANK})


def greedy_ctc(log_probs: np.ndarray, lengths: np.ndarray, blank: int = BLANK) -> list[list[int]]:
    """Best path of (B, T, V) scores over each row's ``lengths`` frames: argmax, repeats collapsed, blanks dropped."""
    best = log_probs.argmax(axis=-1)  # (B, T)
    previous = np.pad(best[:, :-1], ((0, 0), (1, 0)), constant_values=-1)  # (B, T)
    keep = (best != blank) & (best != previous) & (np.arange(best.shape[1])[None] < lengths[:, None])
    return [row[k].tolist() for row, k in zip(best, keep)]


stepper = Seq2SeqStepper    # the engine's name for it (tasks.engine.export): the seq2seq head's graphs


def predict(exported: Exported, inputs: Sequence[str | Path | np.ndarray | torch.Tensor], batch_size: int = 16,
            beams: int = 1, max_new_tokens: int | None = None, sample_rate: int | None = None,
            **options: Any) -> list[str]:
    """Transcripts of audio files or sample arrays, as ``AsrTask.predict``: CTC greedy decoding (other
    generation options do not apply to CTC, as in the head), or attention decoding, greedy or beam search."""
    side = exported.sidecar
    attention = "graphs" in side
    if attention:
        check_options(**options)
    else:
        refuse_option(f"--beams {beams}", beams > 1)
    alphabet = side.get("alphabet")
    tokenizer = None if alphabet is not None else exported.tokenizer()
    rate = exported.preprocessing.get("sample_rate", SAMPLE_RATE)
    lengths, load = clips(inputs, rate, sample_rate)
    texts = [""] * len(inputs)
    for batch_ids in length_sorted_batches(lengths, batch_size):
        batch = collate_audio([{"audio": load(i), "text": ""} for i in batch_ids])
        waves, mask = batch["inputs"].numpy(), batch["mask"].numpy()
        if attention:
            budget = max_new_tokens or unit_budget(waves.shape[1])
            rows = decode(Seq2SeqStepper(exported, waves, mask, budget), (tokenizer.eos_id,), budget, beams, **options)
        else:
            out = exported.run(inputs=waves, mask=mask)
            rows = greedy_ctc(out["log_probs"], out["lengths"], side["blank"])
        for i, ids in zip(batch_ids, rows):
            texts[i] = "".join(alphabet[u] for u in ids) if alphabet is not None else tokenizer.decode(ids)
    return texts
