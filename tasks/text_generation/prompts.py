"""Prompts in, continuations out: encoding, batched generation, decoding and streaming to a terminal.

A prompt is fed after an end-of-text token, the document boundary the model saw before every
training document, so an empty prompt starts a new document. Batched prompts are left-padded
(the LM head's step protocol requires it); positions are counted per row, so a padded prompt
continues exactly as it would alone.
"""
from __future__ import annotations

from typing import Any, Sequence, TextIO

import torch

from tasks.engine.evaluation import to_device
from zoo.generation import stream
from zoo.tokenizer import BaseTokenizer, pad_ids


def position_limit(model: torch.nn.Module) -> int | None:
    """The positions a learned-position backbone has (``max_len``); None for rotary positions (no limit)."""
    cfg = getattr(model.backbone, "cfg", None)
    return cfg.max_len if getattr(cfg, "position", None) == "learned" else None


def prompt_ids(tokenizer: BaseTokenizer, texts: Sequence[str], max_new_tokens: int,
               limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask (B, T), each prompt after an end-of-text token.

    Raises when a prompt plus ``max_new_tokens`` would pass ``limit`` positions (a learned-position
    backbone's ``max_len``: positions past it do not exist).
    """
    rows = [[tokenizer.eos_id, *tokenizer.encode(text)] for text in texts]
    if limit is not None:
        for number, row in enumerate(rows, 1):
            if len(row) + max_new_tokens > limit:
                raise ValueError(f"prompt {number} has {len(row)} tokens; with --max-new-tokens {max_new_tokens} "
                                 f"it passes the model's {limit} positions")
    return pad_ids(rows, tokenizer.pad_id, left_pad=True)


def encode_prompts(model: torch.nn.Module, texts: Sequence[str], max_new_tokens: int) -> dict[str, torch.Tensor]:
    """The batch ``{"inputs", "mask"}`` (B, T) of left-padded prompts on the model's device (:func:`prompt_ids`)."""
    inputs, mask = prompt_ids(model.tokenizer, texts, max_new_tokens, position_limit(model))
    return to_device({"inputs": inputs, "mask": mask}, next(model.parameters()).device)


def continuation(tokenizer: BaseTokenizer, prompt: list[int], new: list[int]) -> str:
    """The text ``new`` adds after ``prompt`` (with its leading space, when it starts a word)."""
    before = tokenizer.decode(prompt)
    after = tokenizer.decode(prompt + new)
    if after.startswith(before):
        return after[len(before):]
    text = tokenizer.decode(new)  # the tokenizer normalised the prompt differently in context
    starts_word = bool(new) and tokenizer.starts_word(new[0])
    return (" " + text) if starts_word and before else text


def generate_texts(model: torch.nn.Module, texts: Sequence[str], **options: Any) -> list[str]:
    """Continuations of ``texts``, generated as one left-padded batch."""
    batch = encode_prompts(model, texts, options.get("max_new_tokens", 32))
    new_rows = model.generate(batch, **options)
    prompts = [row[mask].tolist() for row, mask in zip(batch["inputs"], batch["mask"])]
    return [continuation(model.tokenizer, prompt, new) for prompt, new in zip(prompts, new_rows)]


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
