"""`zoo explain text_generation`: which prompt tokens the next-token prediction rests on.

The prompt is encoded as for generation (after an end-of-text token); the model's most likely next
token is explained by integrated gradients (default; captum ``LayerIntegratedGradients`` on the token
embedding from an all-padding baseline, of that token's logit), gradient x input, or ``attention``:
the last position's self-attention over the prompt, averaged over heads and layers (each row of
weights sums to 1). Drawn as highlighted tokens (PNG and HTML).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from tasks.engine.attention_maps import recorded_attention
from tasks.engine.attributions import METHODS as ATTRIBUTIONS, token_attributions
from tasks.engine.explain_plots import fraction, heading, output_path, save_token_attributions, token_labels
from tasks.text_generation.prompts import encode_prompts
from zoo.errors import ZooError

METHODS = (*ATTRIBUTIONS, "attention")


def explain_inputs(model: torch.nn.Module, inputs: Sequence[str], method: str, out: Path,
                   **options: Any) -> list[dict[str, Any]]:
    """Per prompt: ``prediction`` (the next token's text), ``score`` (its probability), ``tokens``, their
    ``attributions`` (or attention weights), ``delta`` for integrated gradients and the ``files``."""
    tokenizer = model.tokenizer

    def next_logits(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model({"inputs": ids, "mask": mask})["logits"][:, -1].float()  # (B, V)

    results = []
    for number, prompt in enumerate(inputs):
        batch = encode_prompts(model, [prompt], 1)                  # (1, T): end-of-text + the prompt
        ids, mask = batch["inputs"], batch["mask"]
        with torch.no_grad():
            probabilities = next_logits(ids, mask).softmax(dim=-1)[0]  # (V,)
        target = int(probabilities.argmax())
        delta = None
        if method == "attention":
            scores = last_position_attention(model, batch)
            label = "attention of the last position (mean over heads and layers)"
        else:
            scores, delta = token_attributions(model, next_logits, ids, mask,
                                               torch.tensor([target], device=ids.device), method, tokenizer.pad_id)
            scores = scores[0]
            label = "attribution to the next token's logit"
        tokens, starts = token_labels(tokenizer, ids[0].tolist())
        word = tokenizer.decode([target]) or tokens[0]
        title = heading(f"next token {word!r}", f"p = {fraction(float(probabilities[target]))}",
                        method.replace("_", " "))
        files = save_token_attributions(tokens, scores.tolist(), title, output_path(out, number, prompt),
                                        output_path(out, number, prompt, ".html"), label=label, starts=starts,
                                        signed=method != "attention")
        results.append({"prediction": word, "score": float(probabilities[target]), "score_name": "probability",
                        "method": method, "tokens": tokens, "attributions": scores.tolist(),
                        "delta": None if delta is None else float(delta[0]), "files": [str(f) for f in files]})
    return results


@torch.no_grad()
def last_position_attention(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(T,) the last position's self-attention over a one-prompt ``batch``, mean over heads and layers."""
    stack = getattr(model.backbone, "stack", None)
    if stack is None:
        raise ZooError(f"--method attention: backbone {model.backbone.zoo_spec['name']!r} is not one of the "
                       f"zoo's own text decoders; use --method integrated_gradients")
    with recorded_attention([block.attn for block in stack.blocks]) as weights:
        model(batch)
    return torch.stack(weights).mean(dim=(0, 2))[0, -1].cpu()     # layers, heads averaged: (T,)
