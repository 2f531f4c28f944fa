"""The seq2seq head (translation, attention-based ASR) as an encoder graph and a decoder-step graph.

- ``encoder``: the backbone's ``inputs``/``mask`` -> every decoder layer's cross-attention
  ``context_keys``/``context_values`` (layers, B, heads, S, head_dim), projected once per source, and the
  ``context_mask`` (B, S) of the backbone's positions;
- ``decoder``: ``tokens`` (B, 1) at slot ``position`` () of a static self-attention cache of any fixed
  ``capacity`` (``past_keys``/``past_values`` (layers, B, heads, capacity, head_dim), ``past_key_mask``
  (B, capacity)) and the context -> ``logits`` (B, V) and ``present_keys``/``present_values``/
  ``present_key_mask``, written in place at ``position`` (``KVCache.from_tensors``).

:class:`Seq2SeqStepper` drives them from numpy: a cache of ``max_new_tokens + 1`` slots (as the head's
static cache), BOS first, rows reordered together with their context for beam search.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tasks.engine.export import Exported, Graph, ModelPart
from tasks.engine.onnx_decode import StepState
from zoo.layers.attention import KVCache
from zoo.tokenizer import Tokenizer

ROW_AXES = {"keys": 1, "values": 1, "key_mask": 0, "context_keys": 1, "context_values": 1, "context_mask": 0}
TRACED_CAPACITY = 5


class Encoder(ModelPart):
    """The backbone once per source and every decoder layer's cross-attention keys/values."""

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.model.backbone(inputs, mask)
        keys, values = zip(*self.model.head.project_context(features.tokens))
        tokens = features.tokens
        real = features.mask if features.mask is not None else torch.ones(tokens.shape[:2], dtype=torch.bool,
                                                                            device=tokens.device)
        real = real.clone()   # a text backbone returns the mask it was given: an output must not be an input
        return {"context_keys": torch.stack(keys), "context_values": torch.stack(values), "context_mask": real}


class DecoderStep(nn.Module):
    """One target token through the decoder over a static cache given as tensors (copied, then written)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, tokens: torch.Tensor, position: torch.Tensor, context_keys: torch.Tensor,
                context_values: torch.Tensor, context_mask: torch.Tensor, past_keys: torch.Tensor,
                past_values: torch.Tensor, past_key_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        cache = KVCache.from_tensors(past_keys.clone(), past_values.clone(), past_key_mask.clone(), position)
        context = list(zip(context_keys.unbind(0), context_values.unbind(0)))
        hidden = self.head.decoder(tokens, context, context_mask, cache)
        return {"logits": self.head.proj(hidden[:, -1]), "present_keys": torch.stack(cache.keys),
                "present_values": torch.stack(cache.values), "present_key_mask": cache.key_mask}


def graphs(model: nn.Module, inputs: torch.Tensor, mask: torch.Tensor,
           input_axes: dict[int, str]) -> dict[str, Graph]:
    """The encoder graph over example backbone ``inputs``/``mask`` (their dynamic ``input_axes``) and the
    decoder-step graph; batch, source length and cache capacity dynamic."""
    head = model.head
    with torch.no_grad():
        context = Encoder(model)(inputs, mask)
    layers, rows = len(head.stack.blocks), inputs.shape[0]
    heads = head.stack.blocks[0].attn.heads
    head_dim = head.embed.embedding_dim // heads
    cache = torch.zeros(layers, rows, heads, TRACED_CAPACITY, head_dim)
    key_mask = torch.zeros(rows, TRACED_CAPACITY, dtype=torch.bool)
    key_mask[:, :2] = True
    step_inputs = {"tokens": torch.full((rows, 1), Tokenizer.bos_id), "position": torch.tensor(2), **context,
                   "past_keys": torch.randn_like(cache), "past_values": torch.randn_like(cache),
                   "past_key_mask": key_mask}
    source_axes, cache_axes = {1: "batch", 3: "source"}, {1: "batch", 3: "capacity"}
    context_axes = {"context_keys": source_axes, "context_values": source_axes,
                    "context_mask": {0: "batch", 1: "source"}}
    encoder_axes = {"inputs": input_axes, "mask": input_axes, **context_axes}
    step_axes = {"tokens": {0: "batch"}, **context_axes, "past_keys": cache_axes, "past_values": cache_axes,
                 "past_key_mask": {0: "batch", 1: "capacity"}, "logits": {0: "batch"}, "present_keys": cache_axes,
                 "present_values": cache_axes, "present_key_mask": {0: "batch", 1: "capacity"}}
    layout = {"layout": ["layers", "batch", "heads", "capacity", "head_dim"], "layers": layers, "heads": heads,
              "head_dim": head_dim, "capacity": "max_new_tokens + 1 (the axis is dynamic)", "position_input": "position"}
    extra = {"kv_cache": layout, "bos": Tokenizer.bos_id}     # the static cache the decoder-step graph reads and writes
    return {"encoder": Graph(Encoder(model), {"inputs": inputs, "mask": mask}, encoder_axes),
            "decoder": Graph(DecoderStep(model), step_inputs, step_axes, extra)}


class Seq2SeqStepper:
    """The step protocol over the two graphs for one batch of sources (encoded once, here)."""

    def __init__(self, exported: Exported, inputs: np.ndarray, mask: np.ndarray, max_new_tokens: int) -> None:
        side = exported.sidecar
        context = exported.graph("encoder").run(inputs=inputs, mask=mask)
        rows, layout = inputs.shape[0], side["kv_cache"]
        shape = (layout["layers"], rows, layout["heads"], max_new_tokens + 1, layout["head_dim"])
        arrays = {"keys": np.zeros(shape, np.float32), "values": np.zeros(shape, np.float32),
                  "key_mask": np.zeros((rows, shape[3]), dtype=bool)}
        self.decoder = exported.graph("decoder")
        self.state = StepState(arrays, ROW_AXES, fixed=context)
        self.start = np.full((rows, 1), side["bos"], dtype=np.int64)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self.state.feed(self.decoder, tokens)

    def reorder(self, index: np.ndarray) -> None:
        self.state.reorder(index)
        self.start = self.start[index]
