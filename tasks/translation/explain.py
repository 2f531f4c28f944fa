"""`zoo explain translation`: the cross-attention alignment of a translation.

The source is translated (greedy, or ``--beams``), then the decoder is run once more, teacher-forced
on that translation, while :func:`tasks.engine.attention_maps.recorded_attention` records every
decoder layer's cross-attention: the map is target tokens (each produced token, then EOS) x source
tokens, averaged over layers and heads, so every row sums to 1. The score is the translation's
per-token geometric-mean probability.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch

from heads.seq2seq import IGNORE
from tasks.engine.attention_maps import recorded_attention
from tasks.engine.explain_plots import fraction, heading, output_path, save_matrix, token_labels
from tasks.engine.flags import POSITIVE_INT
from tasks.translation.vocab import DEFAULT_MAX_LEN, tokenizers
from zoo.texts import encode_sources, output_budget
from zoo.tokenizer import pad_ids

METHODS = ("cross_attention",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--beams``: the beam width of the translation that is explained."""
    parser.add_argument("--beams", type=POSITIVE_INT, default=1, help="beam search width of the translation")


@torch.no_grad()
def explain_inputs(model: torch.nn.Module, inputs: Sequence[str], method: str, out: Path,
                   beams: int = 1) -> list[dict[str, Any]]:
    """Per source text: ``prediction`` (the translation), ``score`` (geometric-mean token probability),
    ``source_tokens``, ``target_tokens``, ``alignment`` (target x source rows summing to 1), ``files``."""
    source_tok, target_tok = tokenizers(model)
    max_len = int(model.preprocessing.get("max_len", DEFAULT_MAX_LEN))
    device = next(model.parameters()).device
    results = []
    for number, (text, source) in enumerate(zip(inputs, encode_sources(source_tok, inputs, max_len))):
        ids, mask = (t.to(device) for t in pad_ids([source], source_tok.pad_id))           # (1, S)
        generated = model.generate({"inputs": ids, "mask": mask}, beams=beams,
                                   max_new_tokens=output_budget(len(source), max_len))[0]
        alignment, score = cross_attention(model, ids, mask, generated)
        translation = target_tok.decode(generated)
        rows, _ = token_labels(target_tok, [*generated, target_tok.eos_id])
        columns, _ = token_labels(source_tok, source)
        title = heading(repr(translation), f"p/token = {fraction(score)}", "cross-attention, mean over "
                        f"{len(model.head.stack.blocks)} layers x {model.head.stack.blocks[0].cross_attn.heads} heads")
        path = save_matrix(alignment.numpy(), rows, columns, title, output_path(out, number, text),
                           xlabel="source token", ylabel="target token (produced in order)",
                           label="attention weight (rows sum to 1)")
        results.append({"prediction": translation, "score": score, "score_name": "p/token", "method": method,
                        "source_tokens": columns, "target_tokens": rows, "alignment": alignment.tolist(),
                        "files": [str(path)]})
    return results


def cross_attention(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                    generated: list[int]) -> tuple[torch.Tensor, float]:
    """(alignment (L+1, S) on the CPU, geometric-mean probability of the tokens) of translation ``generated``
    of the one source ``ids`` (1, S): the decoder teacher-forced on it, cross-attention of every layer."""
    targets = torch.tensor([generated], dtype=torch.long, device=ids.device).reshape(1, -1)   # (1, L)
    batch = {"inputs": ids, "mask": mask, "targets": targets, "target_mask": torch.ones_like(targets, dtype=torch.bool)}
    with recorded_attention([block.cross_attn for block in model.head.stack.blocks]) as weights:
        outputs = model(batch)
    alignment = torch.stack(weights).mean(dim=(0, 2))[0]                                     # (L+1, S)
    labels = outputs["labels"][0]                                                            # (L+1,)
    logp = outputs["logits"][0].float().log_softmax(dim=-1).gather(-1, labels.clamp(min=0)[:, None])[:, 0]
    return alignment.cpu(), float(logp[labels != IGNORE].mean().exp())
