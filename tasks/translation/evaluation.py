"""Batched translation of raw sentences and the corpus scores of the field (sacrebleu)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import sacrebleu
import torch

from tasks.engine.batching import in_order, length_sorted_batches
from tasks.engine.evaluation import EvalOptions, run_batches
from zoo.texts import DEFAULT_MAX_LEN, encode_sources, tokenizers, translate_batch
from zoo.tokenizer import BaseTokenizer, pad_ids


def translate(model: torch.nn.Module, sources: Sequence[str], batch_size: int = 32,
              max_new_tokens: int | None = None, options: EvalOptions = EvalOptions(),
              **generation: Any) -> list[str]:
    """Detokenized translations of ``sources``, in order; ``generation`` goes to ``model.generate``.

    Sources are batched by length (less padding, and one long sentence does not hold up a
    batch of short ones). ``max_new_tokens`` None sizes each batch's budget from its sources.
    Generation runs under ``options``' autocast.
    """
    source_tok = tokenizers(model)[0]
    max_len = int(model.preprocessing.get("max_len", DEFAULT_MAX_LEN))
    chunks, batch_of = source_batches(sources, source_tok, max_len, batch_size)

    def generate(batch: dict[str, torch.Tensor]) -> list[str]:
        return translate_batch(model, batch, max_new_tokens, **generation)

    return in_order(run_batches(model, chunks, batch_of, generate, options))


def source_batches(sources: Sequence[str], source_tok: BaseTokenizer, max_len: int, batch_size: int,
                   ) -> tuple[list[list[int]], Callable[[list[int]], dict[str, torch.Tensor]]]:
    """(batches of source indices, shortest sources first; ``batch_of(indices) -> {"inputs", "mask"}`` (B, S)):
    each source cut to ``max_len`` tokens (:func:`zoo.texts.encode_sources`)."""
    encoded = encode_sources(source_tok, sources, max_len)

    def batch_of(rows: list[int]) -> dict[str, torch.Tensor]:
        inputs, mask = pad_ids([encoded[i] for i in rows], source_tok.pad_id)
        return {"inputs": inputs, "mask": mask}

    return length_sorted_batches([len(ids) for ids in encoded], batch_size), batch_of


def scores(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Corpus ``bleu`` and ``chrf`` (sacrebleu, 0-100) and ``exact_match`` (the fraction of hypotheses equal
    to one of their references, in [0, 1]); each hypothesis has one reference (a string) or several (a
    list: captions; a hypothesis with fewer references than others leaves the missing streams empty, which
    sacrebleu allows)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    several = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if not several or not all(several):
        raise ValueError("no hypotheses to score" if not several else "a hypothesis without references")
    streams = [[refs[k] if k < len(refs) else None for refs in several] for k in range(max(map(len, several)))]
    exact = sum(h.strip() in {r.strip() for r in refs} for h, refs in zip(hypotheses, several)) / len(several)
    return {"bleu": sacrebleu.corpus_bleu(list(hypotheses), streams).score,
            "chrf": sacrebleu.corpus_chrf(list(hypotheses), streams).score,
            "exact_match": exact}
