"""The deploy suite's generating models (:mod:`benchmarks.deploy`) timed and scored by their decoding.

A model whose head generates (the LM head of text generation, the seq2seq head of translation and of
attention ASR) has no whole-batch forward to time: its exports are a prefill/encoder graph and a
decoder-step graph. Every variant of it (fp32, int8, pruned, distilled, onnx, onnx-int8) is timed by the
same greedy generation of ``--decode-tokens`` new tokens with no stop token (each variant makes as many)
from the same test batch: a language model's first :data:`PROMPT_TOKENS` tokens of each test block,
a seq2seq model's test sources. PyTorch variants run ``model.generate`` (:mod:`zoo.generation`, static
KV cache), ONNX variants the numpy greedy loop over their graphs (:mod:`tasks.engine.onnx_decode`);
throughput is in new tokens/s.

ONNX variants are scored by the task's own ``evaluate`` through :class:`ExportedGenerator`: its
``generate`` decodes with the numpy loop (translation's BLEU, attention ASR's WER), its ``forward``
gives a language model's logits at every position (bits per character). The prefill graph returns the
last position's logits only, so scoring a block through it alone would take one run per prefix; the
block's first token goes through the prefill graph and every later one through the decoder-step graph
(teacher forcing), the graphs and cache that decoding uses.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

import zoo
from heads.seq2seq import Seq2SeqHead
from tasks.engine.export import Exported, task_module
from tasks.engine.onnx_decode import decode, loop_inputs
from tasks.engine.task import Workload
from zoo.errors import ZooError
from zoo.texts import position_limit

PROMPT_TOKENS = 16      # a language model's prompt: the first tokens of a test block
SPEED = "greedy decoding of {tokens} new tokens (no stop token), new tokens/s"


def decodes(model: nn.Module) -> bool:
    """Whether ``model``'s head generates (and so its variants are timed by decoding)."""
    return callable(getattr(model.head, "step", None))


class ExportedGenerator(nn.Module):
    """``model`` generating through the prefill/encoder and decoder-step graphs of the export in ``folder``
    (onnxruntime, the numpy loop): the head, tokenizer and preprocessing the task reads stay ``model``'s."""

    def __init__(self, model: nn.Module, folder: Any) -> None:
        super().__init__()
        self.model = model
        self.exported = Exported(folder)
        if "graphs" not in self.exported.sidecar:
            raise ZooError(f"{folder}: a single-graph export; it has no decoder-step graph to generate with")
        self.stepper = task_module(zoo.get_task(self.exported.sidecar["task"])).stepper

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def generate(self, batch: dict[str, Any], max_new_tokens: int = 32, beams: int = 1,
                 stop_tokens: tuple[int, ...] | None = None, **options: Any) -> list[list[int]]:
        """New token ids per row, as ``zoo.generation.generate`` (stop tokens default to the tokenizer's EOS)."""
        stops = (self.model.tokenizer.eos_id,) if stop_tokens is None else tuple(stop_tokens)
        inputs, mask = loop_inputs(batch)
        return decode(self.stepper(self.exported, inputs, mask, max_new_tokens), stops, max_new_tokens, beams,
                      **options)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A language model's ``logits`` (B, T, V) of ``inputs`` (B, T): the first position by the prefill
        graph, each later one by a decoder step fed the true previous token."""
        if "prefill" not in self.exported.sidecar["graphs"]:
            raise ZooError(f"{self.exported.folder}: an encoder + decoder-step export has no language-model "
                           f"forward; it is scored by what it generates")
        inputs = batch["inputs"].cpu().numpy()  # (B, T)
        rows, steps = inputs.shape
        stepper = self.stepper(self.exported, inputs[:, :1], np.ones((rows, 1), dtype=bool), steps - 1)
        logits = [stepper.step(inputs[:, :1])] + [stepper.step(inputs[:, t:t + 1]) for t in range(1, steps)]
        return {"logits": torch.from_numpy(np.stack(logits, axis=1))}  # (B, T, V)


def decode_batch(model: nn.Module, batch: dict[str, Any], new_tokens: int) -> dict[str, torch.Tensor]:
    """The ``{"inputs", "mask"}`` (B, T) generation starts from: a seq2seq model's sources as collated, a
    language model's first :data:`PROMPT_TOKENS` tokens (fewer where its positions end first)."""
    keep = None
    if not isinstance(model.head, Seq2SeqHead):
        limit = position_limit(model)
        keep = PROMPT_TOKENS if limit is None else min(PROMPT_TOKENS, limit - new_tokens)
        if keep < 1:
            raise ZooError(f"--decode-tokens {new_tokens}: the model has {limit} positions, none left for a "
                           f"prompt; pass fewer")
    inputs, mask = loop_inputs(batch, keep)
    return {"inputs": torch.from_numpy(np.ascontiguousarray(inputs)), "mask": torch.from_numpy(mask.copy())}


def decode_workload(name: str, model: nn.Module, batch: dict[str, Any], size: int, new_tokens: int) -> Workload:
    """Greedy generation of ``new_tokens`` by ``model`` (PyTorch or :class:`ExportedGenerator`) from ``batch``
    (``size`` rows, see :func:`decode_batch`) as a benchmark workload counting new tokens."""
    prompts = decode_batch(model, batch, new_tokens)
    return Workload(name=name, unit="new tokens", items=size * new_tokens, model=model, batch_size=size,
                    step=lambda: model.generate(prompts, max_new_tokens=new_tokens, stop_tokens=()))
