"""`zoo explain sentiment`: which tokens pushed a text towards its predicted class.

Integrated gradients (default; captum ``LayerIntegratedGradients`` on the token embedding, from an
all-padding baseline) or gradient x input, of the predicted class's logit, one value per token, drawn
as highlighted tokens (PNG and HTML). By completeness the integrated-gradients values of a text add
up to ``logit(text) - logit(baseline)`` within the reported ``delta``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from tasks.engine.attributions import METHODS, token_attributions
from tasks.engine.explain_plots import fraction, heading, output_path, save_token_attributions, token_labels
from tasks.sentiment.task import encode

__all__ = ["METHODS", "explain_inputs"]


def explain_inputs(model: torch.nn.Module, inputs: Sequence[str], method: str, out: Path,
                   **options: Any) -> list[dict[str, Any]]:
    """Per text: ``prediction`` (label), ``score`` (its probability), ``tokens``, ``attributions`` (one per
    token, to the label's logit), ``delta`` (integrated gradients' completeness gap) and the ``files``."""
    device = next(model.parameters()).device
    labels = model.head.labels

    def logits(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model({"inputs": ids, "mask": mask})["logits"].float()  # (B, C)

    results = []
    for number, text in enumerate(inputs):
        if not text.strip():
            raise ValueError(f"input {number + 1} is an empty text")
        ids, mask = (t.to(device) for t in encode(model, [text]))      # (1, T) each
        with torch.no_grad():
            probabilities = logits(ids, mask).softmax(dim=-1)[0]       # (C,)
        target = int(probabilities.argmax())
        scores, delta = token_attributions(model, logits, ids, mask, torch.tensor([target], device=device),
                                           method, model.tokenizer.pad_id)
        tokens, starts = token_labels(model.tokenizer, ids[0].tolist())
        title = heading(labels[target], f"p = {fraction(float(probabilities[target]))}", method.replace("_", " "))
        files = save_token_attributions(tokens, scores[0].tolist(), title, output_path(out, number, text),
                                        output_path(out, number, text, ".html"),
                                        label=f"attribution to the logit of {labels[target]!r}", starts=starts)
        results.append({"prediction": labels[target], "score": float(probabilities[target]),
                        "score_name": "probability", "method": method, "tokens": tokens,
                        "attributions": scores[0].tolist(),
                        "delta": None if delta is None else float(delta[0]), "files": [str(f) for f in files]})
    return results
