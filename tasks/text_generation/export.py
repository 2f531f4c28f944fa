"""Text generation as two exported graphs driven by a numpy loop (:mod:`tasks.engine.onnx_decode`).

- ``prefill``: left-padded prompts ``inputs``/``mask`` (B, T) -> ``logits`` (B, V) of the last position,
  every layer's ``present_keys``/``present_values`` (layers, B, heads, T, head_dim) and
  ``present_next_position`` (B,), each row's next position id (left padding is not counted);
- ``decoder``: one step, ``tokens`` (B, 1) at slot ``position`` () of a static KV cache of any fixed
  ``capacity`` (``past_keys``/``past_values`` (layers, B, heads, capacity, head_dim), ``past_key_mask``
  (B, capacity), ``past_next_position`` (B,)) -> ``logits`` and the same four as ``present_*``, the
  cache written in place at ``position`` (``KVCache.from_tensors``).

The loop places the prompt's keys in a cache of prompt + ``max_new_tokens`` slots, as the PyTorch
static cache does, then feeds one token per step: the same texts as ``TextGenerationTask.predict``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from tasks.engine.export import Exported, Graph, ModelPart
from tasks.engine.onnx_decode import StepState, decode, static_cache
from zoo.texts import continuation, position_limit, prompt_ids
from zoo.layers.attention import KVCache
from zoo.tokenizer import pad_ids

TRACED_PROMPTS = ([5, 6, 7, 8, 9], [10, 11])     # two lengths, so the prefill traces left padding
TRACED_CAPACITY = 9
ROW_AXES = {"keys": 1, "values": 1, "key_mask": 0, "next_position": 0}


class Prefill(ModelPart):
    """The prompt through the causal backbone into a fresh cache: last logits, stacked keys/values."""

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        cache = self.model.backbone.new_cache()
        features = self.model.backbone(inputs, mask, cache=cache)
        return {"logits": self.model.head.proj(features.tokens[:, -1]), "present_keys": torch.stack(cache.keys),
                "present_values": torch.stack(cache.values), "present_next_position": cache.next_position}


class DecoderStep(ModelPart):
    """One token through the backbone over a static cache given as tensors (copied, then written in place)."""

    def forward(self, tokens: torch.Tensor, position: torch.Tensor, past_keys: torch.Tensor,
                past_values: torch.Tensor, past_key_mask: torch.Tensor,
                past_next_position: torch.Tensor) -> dict[str, torch.Tensor]:
        cache = KVCache.from_tensors(past_keys.clone(), past_values.clone(), past_key_mask.clone(), position,
                                     past_next_position)
        features = self.model.backbone(tokens, torch.ones_like(tokens, dtype=torch.bool), cache=cache)
        return {"logits": self.model.head.proj(features.tokens[:, -1]), "present_keys": torch.stack(cache.keys),
                "present_values": torch.stack(cache.values), "present_key_mask": cache.key_mask,
                "present_next_position": cache.next_position}


def graph(model: nn.Module) -> dict[str, Graph]:
    """The prefill and decoder-step graphs; batch, prompt length and cache capacity dynamic."""
    backbone = model.backbone
    layers, heads = len(backbone.stack.blocks), backbone.cfg.heads
    vocab = backbone.cfg.vocab_size     # left-padded example prompts of two lengths, ids below the vocabulary size
    inputs, mask = pad_ids([[i % vocab for i in row] for row in TRACED_PROMPTS], 0, left_pad=True)
    with torch.no_grad():
        prefilled = Prefill(model)(inputs, mask)
    rows, steps = inputs.shape
    key_mask = torch.zeros(rows, TRACED_CAPACITY, dtype=torch.bool)
    key_mask[:, :steps] = mask
    step_inputs = {"tokens": inputs[:, -1:], "position": torch.tensor(steps),
                   "past_keys": _padded(prefilled["present_keys"]), "past_values": _padded(prefilled["present_values"]),
                   "past_key_mask": key_mask, "past_next_position": prefilled["present_next_position"]}
    cache_axes = {1: "batch", 3: "capacity"}
    step_axes = {"tokens": {0: "batch"}, "past_keys": cache_axes, "past_values": cache_axes,
                 "past_key_mask": {0: "batch", 1: "capacity"}, "past_next_position": {0: "batch"},
                 "logits": {0: "batch"}, "present_keys": cache_axes, "present_values": cache_axes,
                 "present_key_mask": {0: "batch", 1: "capacity"}, "present_next_position": {0: "batch"}}
    prompt_axes = {1: "batch", 3: "tokens"}
    prefill_axes = {"inputs": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}, "logits": {0: "batch"},
                    "present_keys": prompt_axes, "present_values": prompt_axes, "present_next_position": {0: "batch"}}
    cache = {"layout": ["layers", "batch", "heads", "capacity", "head_dim"], "layers": layers, "heads": heads,
             "head_dim": backbone.dim // heads, "capacity": "prompt tokens + max_new_tokens (the axis is dynamic)",
             "position_input": "position"}
    extra = {"kv_cache": cache, "max_positions": position_limit(model)}
    return {"prefill": Graph(Prefill(model), {"inputs": inputs, "mask": mask}, prefill_axes),
            "decoder": Graph(DecoderStep(model), step_inputs, step_axes, extra)}


def _padded(keys: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(static_cache(keys.numpy(), TRACED_CAPACITY))


class LMStepper:
    """The step protocol over the two graphs: the first step runs the prefill, the others the decoder."""

    def __init__(self, exported: Exported, inputs: np.ndarray, mask: np.ndarray, max_new_tokens: int) -> None:
        self.prefill, self.decoder = exported.graph("prefill"), exported.graph("decoder")
        self.start, self.mask = inputs, mask
        self.capacity = inputs.shape[1] + max_new_tokens
        self.state: StepState | None = None

    def step(self, tokens: np.ndarray) -> np.ndarray:
        if self.state is not None:
            return self.state.feed(self.decoder, tokens)
        out = self.prefill.run(inputs=tokens, mask=self.mask)
        key_mask = np.zeros((tokens.shape[0], self.capacity), dtype=bool)
        key_mask[:, :tokens.shape[1]] = self.mask
        arrays = {"keys": static_cache(out["present_keys"], self.capacity),
                  "values": static_cache(out["present_values"], self.capacity), "key_mask": key_mask,
                  "next_position": out["present_next_position"]}
        self.state = StepState(arrays, ROW_AXES, position=tokens.shape[1])
        return out["logits"]

    def reorder(self, index: np.ndarray) -> None:
        if self.state is None:
            self.start, self.mask = self.start[index], self.mask[index]
        else:
            self.state.reorder(index)


stepper = LMStepper     # the engine's name for it (tasks.engine.export)


def predict(exported: Exported, inputs: Sequence[str], max_new_tokens: int = 32, stream: bool = False,
            **options: Any) -> list[str]:
    """Continuations of the prompts, as ``TextGenerationTask.predict`` (greedy or beam search)."""
    tokenizer = exported.tokenizer()
    ids, mask = prompt_ids(tokenizer, inputs, max_new_tokens, exported.sidecar["max_positions"])
    stepper = LMStepper(exported, ids.numpy(), mask.numpy(), max_new_tokens)
    stops = tuple(options.pop("stop_tokens", (tokenizer.eos_id,)))
    new_rows = decode(stepper, stops, max_new_tokens, stream=stream, **options)
    prompts = [row[keep].tolist() for row, keep in zip(ids, mask)]
    return [continuation(tokenizer, prompt, new) for prompt, new in zip(prompts, new_rows)]
