"""Attributions of a model's score to its inputs with captum, shared by the tasks' explanations.

- :func:`token_attributions`: per-token attributions of a text model, by integrated gradients
  (captum ``LayerIntegratedGradients`` on the token embedding; the baseline is every token replaced
  by padding, the mask unchanged) or gradient x input (``LayerGradientXActivation``), summed over the
  embedding dimension. Integrated gradients' completeness: the attributions of a row add up to
  ``score(x) - score(baseline)`` up to the returned convergence delta.
- :func:`input_attributions`: attributions of a score to a float input (a spectrogram, an image) by
  integrated gradients from a zero baseline (``IntegratedGradients``) or gradient x input
  (``InputXGradient``).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from zoo.errors import ZooError

METHODS = ("integrated_gradients", "gradient_x_input")
IG_STEPS = 32   # integration steps: completeness holds to about 1e-3 of the score difference on our models


def token_embedding(model: nn.Module, flag: str) -> nn.Embedding:
    """The backbone's token embedding (our text backbones' ``embed``, a wrapped model's input embeddings);
    a backbone without one is refused naming ``flag``."""
    embed = getattr(model.backbone, "embed", None)
    if not isinstance(embed, nn.Embedding) and hasattr(getattr(model.backbone, "model", None),
                                                       "get_input_embeddings"):
        embed = model.backbone.model.get_input_embeddings()
    if not isinstance(embed, nn.Embedding):
        raise ZooError(f"{flag}: backbone {model.backbone.zoo_spec['name']!r} has no token embedding")
    return embed


def token_attributions(model: nn.Module, score: Callable[..., torch.Tensor], inputs: torch.Tensor,
                       mask: torch.Tensor | None, target: torch.Tensor, method: str, pad_id: int,
                       steps: int = IG_STEPS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(attributions (B, T), convergence delta (B,) or None) of ``score(inputs, mask) -> (B, K)`` at
    column ``target`` (B,) to each token of ``inputs`` (B, T).

    Integrated gradients run from the padding baseline (``pad_id`` everywhere); padding positions
    (``mask`` False) get zero.
    """
    captum = _captum()
    embedding = token_embedding(model, "--method " + method)
    with torch.enable_grad():
        if method == "integrated_gradients":
            explainer = captum.LayerIntegratedGradients(score, embedding)
            attributions, delta = explainer.attribute(inputs, baselines=torch.full_like(inputs, pad_id),
                                                      target=target, additional_forward_args=(mask,),
                                                      n_steps=steps, return_convergence_delta=True)
        elif method == "gradient_x_input":
            attributions = captum.LayerGradientXActivation(score, embedding).attribute(
                inputs, target=target, additional_forward_args=(mask,))
            delta = None
        else:
            raise ZooError(f"--method {method}: unknown; use one of {', '.join(METHODS)}")
    per_token = attributions.float().sum(dim=-1).detach()                       # (B, T)
    if mask is not None:
        per_token = per_token * mask.to(per_token.dtype)
    return per_token, None if delta is None else delta.detach().float()


def input_attributions(score: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, target: int | None,
                       method: str, steps: int = IG_STEPS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(attributions shaped like ``inputs``, convergence delta (B,) or None) of ``score(inputs) -> (B, K)``
    (column ``target``, or (B,) scores with ``target`` None) to the float ``inputs``."""
    captum = _captum()
    inputs = inputs.detach().float()
    with torch.enable_grad():
        if method == "integrated_gradients":
            attributions, delta = captum.IntegratedGradients(score).attribute(
                inputs, baselines=torch.zeros_like(inputs), target=target, n_steps=steps,
                return_convergence_delta=True)
        elif method == "gradient_x_input":
            attributions, delta = captum.InputXGradient(score).attribute(inputs, target=target), None
        else:
            raise ZooError(f"--method {method}: unknown; use one of {', '.join(METHODS)}")
    return attributions.detach(), None if delta is None else delta.detach().float()


def _captum() -> Any:
    """``captum.attr``, or one line saying how to install it (the ``explain`` extra)."""
    try:
        import captum.attr
    except ImportError:
        raise ZooError("`zoo explain` attributions need captum: pip install 'zoo[explain]' (captum==0.9.0)") from None
    return captum.attr
