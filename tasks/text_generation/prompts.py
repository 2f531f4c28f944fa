"""Continuations streamed to a terminal as tokens come (``zoo predict text_generation --stream``).

Prompts are encoded and continuations decoded as :mod:`zoo.texts` does for batched generation
(``ZooModel.generate_text``).
"""
from __future__ import annotations

from typing import Any, TextIO

import torch

from zoo.generation import stream
from zoo.texts import continuation, encode_prompts


@torch.inference_mode()
def stream_text(model: torch.nn.Module, text: str, out: TextIO, **options: Any) -> str:
    """Write ``text`` and then its continuation to ``out`` piece by piece as tokens come; return the continuation."""
    batch = encode_prompts(model, [text], options.get("max_new_tokens", 32))
    prompt = batch["inputs"][0].tolist()
    stops = set(options.get("stop_tokens", (model.tokenizer.eos_id,)))
    out.write(text)
    out.flush()
    new: list[int] = []
    shown = ""
    for (token,) in stream(model, batch, **options):
        if token is None or token in stops:
            break
        new.append(token)
        now = continuation(model.tokenizer, prompt, new)
        out.write(now[len(shown):])
        out.flush()
        shown = now
    return shown
