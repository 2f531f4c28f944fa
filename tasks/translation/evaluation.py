"""Batched translation of raw sentences and the corpus scores of the field (sacrebleu)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import sacrebleu
import torch

from tasks.engine.batching import ordered_chunks
from tasks.engine.evaluation import EvalOptions, run_batches
from tasks.translation.vocab import DEFAULT_MAX_LEN, tokenizers
from zoo.tokenizer import BaseTokenizer, pad_ids


def output_budget(source_tokens: int, max_len: int) -> int:
    """New tokens allowed for a batch whose longest source has ``source_tokens`` tokens.

    Generation stops at EOS anyway; the budget only bounds a row that never emits one
    (an undertrained model repeating itself), which would hold its whole batch up.
    """
    return min(max_len, int(1.5 * source_tokens) + 10)


def translate(model: torch.nn.Module, sources: Sequence[str], batch_size: int = 32,
              max_new_tokens: int | None = None, options: EvalOptions = EvalOptions(),
              **generation: Any) -> list[str]:
    """Detokenized translations of ``sources``, in order; ``generation`` goes to ``model.generate``.

    Sources are batched by length (less padding, and one long sentence does not hold up a
    batch of short ones). ``max_new_tokens`` None sizes each batch's budget from its sources.
    Generation runs under ``options``' autocast.
    """
    source_tok, target_tok = tokenizers(model)
    max_len = int(model.preprocessing.get("max_len", DEFAULT_MAX_LEN))
    chunks, batch_of = source_batches(sources, source_tok, max_len, batch_size)

    def generate(batch: dict[str, torch.Tensor]) -> list[list[int]]:
        budget = max_new_tokens or output_budget(batch["inputs"].shape[1], max_len)
        return model.generate(batch, max_new_tokens=budget, **generation)

    results: list[str] = [""] * len(sources)
    for rows, generated in run_batches(model, chunks, batch_of, generate, options):
        for i, ids in zip(rows, generated):
            results[i] = target_tok.decode(ids)
    return results


def source_batches(sources: Sequence[str], source_tok: BaseTokenizer, max_len: int, batch_size: int,
                   ) -> tuple[list[list[int]], Callable[[list[int]], dict[str, torch.Tensor]]]:
    """(batches of source indices, shortest sources first; ``batch_of(indices) -> {"inputs", "mask"}`` (B, S)):
    each source cut to ``max_len`` tokens; an empty text is refused."""
    for number, text in enumerate(sources, 1):
        if not text.strip():
            raise ValueError(f"input {number} is an empty text; there is nothing to translate")
    encoded = [source_tok.encode(text)[:max_len] for text in sources]
    order = sorted(range(len(sources)), key=lambda i: len(encoded[i]))

    def batch_of(rows: list[int]) -> dict[str, torch.Tensor]:
        inputs, mask = pad_ids([encoded[i] for i in rows], source_tok.pad_id)
        return {"inputs": inputs, "mask": mask}

    return ordered_chunks(order, batch_size), batch_of


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
