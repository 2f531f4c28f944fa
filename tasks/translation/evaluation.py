"""Batched translation of raw sentences and the corpus scores of the field (sacrebleu)."""
from __future__ import annotations

from typing import Any, Sequence

import sacrebleu
import torch

from tasks.engine.batching import ordered_chunks
from tasks.engine.evaluation import EvalOptions, run_batches
from zoo.texts import source_ids, tokenizers, translate_batch
from zoo.tokenizer import pad_ids


def translate(model: torch.nn.Module, sources: Sequence[str], batch_size: int = 32,
              max_new_tokens: int | None = None, options: EvalOptions = EvalOptions(),
              **generation: Any) -> list[str]:
    """Detokenized translations of ``sources``, in order; ``generation`` goes to ``model.generate``.

    Sources are batched by length (less padding, and one long sentence does not hold up a
    batch of short ones). ``max_new_tokens`` None sizes each batch's budget from its sources.
    Generation runs under ``options``' autocast.
    """
    encoded = source_ids(model, sources)
    order = sorted(range(len(sources)), key=lambda i: len(encoded[i]))
    pad_id = tokenizers(model)[0].pad_id

    def batch_of(rows: list[int]) -> dict[str, torch.Tensor]:
        inputs, mask = pad_ids([encoded[i] for i in rows], pad_id)
        return {"inputs": inputs, "mask": mask}

    def generate(batch: dict[str, torch.Tensor]) -> list[str]:
        return translate_batch(model, batch, max_new_tokens, **generation)

    results: list[str] = [""] * len(sources)
    for rows, texts in run_batches(model, ordered_chunks(order, batch_size), batch_of, generate, options):
        for i, text in zip(rows, texts):
            results[i] = text
    return results


def scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus ``bleu`` and ``chrf`` (sacrebleu, 0-100) and ``exact_match`` (fraction in [0, 1])."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} references")
    if not references:
        raise ValueError("no sentence pairs to evaluate")
    exact = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references)) / len(references)
    return {"bleu": sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score,
            "chrf": sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score,
            "exact_match": exact}
