"""Texts in, texts out through :mod:`zoo.generation`: ``ZooModel.generate_text`` and the tasks that generate text.

A causal model (a decoder with the LM head) continues prompts: each prompt is fed after an
end-of-text token, the document boundary the model saw before every training document (so an
empty prompt starts a new document), and batched prompts are left-padded (the LM head's step
protocol requires it; positions are counted per row, so a padded prompt continues exactly as it
would alone). A sequence-to-sequence text model (an encoder with the seq2seq head) translates:
sources are cut to the model's ``max_len`` and right-padded, and the target side decodes with its
own tokenizer when the model stores one (``preprocessing["target_tokenizer"]``, base64
sentencepiece), else with the source one (one joint vocabulary).
"""
from __future__ import annotations

import base64
from typing import Any, Sequence

import torch

from zoo.errors import ZooError
from zoo.progress import working
from zoo.tokenizer import BaseTokenizer, Tokenizer, pad_ids

TARGET_KEY = "target_tokenizer"   # preprocessing key of a separate target tokenizer
DEFAULT_MAX_LEN = 256             # tokens kept per side of a translation (source; target including EOS)


def generate_text(model: torch.nn.Module, texts: Sequence[str], **options: Any) -> list[str]:
    """One text per input: the continuation of each prompt (causal models) or the translation of each
    source (sequence-to-sequence text models), generated as one batch.

    ``options`` are :mod:`zoo.generation`'s (``max_new_tokens``, ``beams``, ``temperature``...) or
    transformers' names for them (``num_beams``, ``do_sample``); ``max_new_tokens`` defaults to 32 for
    a continuation and to a budget sized from the sources for a translation.
    """
    from zoo.generation import transformers_options

    if isinstance(texts, str):
        raise ZooError("generate_text takes a list of texts; wrap one text as [text]")
    if getattr(model.backbone, "modality", None) != "text" or not hasattr(model.head, "init_state"):
        raise ZooError("generate_text needs a text model that generates (a decoder with the lm head, or an "
                       "encoder with the seq2seq head); this one has a "
                       f"{getattr(model.backbone, 'modality', '?')} backbone and a {type(model.head).__name__}")
    if model.tokenizer is None:
        raise ZooError("generate_text needs the model's tokenizer; this model stores none (zoo.create_model(..., "
                       "tokenizer=...))")
    options = transformers_options(options)
    if model.backbone.causal:
        return continue_texts(model, texts, **options)
    return translate_texts(model, texts, **options)


# ---- continuations --------------------------------------------------------------------------------------

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
    inputs, mask = prompt_ids(model.tokenizer, texts, max_new_tokens, position_limit(model))  # (B, T) each
    device = next(model.parameters()).device
    return {"inputs": inputs.to(device), "mask": mask.to(device)}


def continuation(tokenizer: BaseTokenizer, prompt: list[int], new: list[int]) -> str:
    """The text ``new`` adds after ``prompt`` (with its leading space, when it starts a word)."""
    before = tokenizer.decode(prompt)
    after = tokenizer.decode(prompt + new)
    if after.startswith(before):
        return after[len(before):]
    text = tokenizer.decode(new)  # the tokenizer normalised the prompt differently in context
    starts_word = bool(new) and tokenizer.starts_word(new[0])
    return (" " + text) if starts_word and before else text


def continue_texts(model: torch.nn.Module, texts: Sequence[str], **options: Any) -> list[str]:
    """Continuations of ``texts``, generated as one left-padded batch."""
    batch = encode_prompts(model, texts, options.get("max_new_tokens", 32))
    with working(f"generating {len(texts)} continuation(s)"):
        new_rows = model.generate(batch, **options)
    prompts = [row[mask].tolist() for row, mask in zip(batch["inputs"], batch["mask"])]
    return [continuation(model.tokenizer, prompt, new) for prompt, new in zip(prompts, new_rows)]


# ---- translations ---------------------------------------------------------------------------------------

def tokenizers(model: torch.nn.Module) -> tuple[BaseTokenizer, BaseTokenizer]:
    """(source, target) tokenizers of a translation model."""
    source = model.tokenizer
    if source is None:
        raise ValueError("this model has no tokenizer, so it cannot read text; train it with `zoo train translation`")
    return source, target_tokenizer(source, model.preprocessing)


def target_tokenizer(source: BaseTokenizer, settings: dict[str, Any]) -> BaseTokenizer:
    """The target side's tokenizer of a model with ``source`` and ``preprocessing`` ``settings``: the
    separate one stored there, else ``source`` itself (one joint vocabulary)."""
    stored = settings.get(TARGET_KEY)
    return Tokenizer(base64.b64decode(stored)) if stored else source


def source_ids(model: torch.nn.Module, texts: Sequence[str]) -> list[list[int]]:
    """Each source text's token ids, cut to the model's ``max_len`` (:func:`encode_sources`)."""
    return encode_sources(tokenizers(model)[0], texts, int(model.preprocessing.get("max_len", DEFAULT_MAX_LEN)))


def encode_sources(tokenizer: BaseTokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Each source text's token ids cut to ``max_len``; an empty text raises, naming its number."""
    for number, text in enumerate(texts, 1):
        if not text.strip():
            raise ValueError(f"input {number} is an empty text; there is nothing to translate")
    return [tokenizer.encode(text)[:max_len] for text in texts]


def output_budget(source_tokens: int, max_len: int) -> int:
    """New tokens allowed for a batch whose longest source has ``source_tokens`` tokens.

    Generation stops at EOS anyway; the budget only bounds a row that never emits one
    (an undertrained model repeating itself), which would hold its whole batch up.
    """
    return min(max_len, int(1.5 * source_tokens) + 10)


def translate_batch(model: torch.nn.Module, batch: dict[str, torch.Tensor], max_new_tokens: int | None = None,
                    **generation: Any) -> list[str]:
    """Detokenized translations of a batch of sources ``{"inputs", "mask"}`` (B, S); ``max_new_tokens``
    None: :func:`output_budget` of its longest source."""
    budget = max_new_tokens or output_budget(batch["inputs"].shape[1],
                                             int(model.preprocessing.get("max_len", DEFAULT_MAX_LEN)))
    target = tokenizers(model)[1]
    return [target.decode(ids) for ids in model.generate(batch, max_new_tokens=budget, **generation)]


def translate_texts(model: torch.nn.Module, texts: Sequence[str], **generation: Any) -> list[str]:
    """Translations of ``texts``, generated as one right-padded batch on the model's device."""
    inputs, mask = pad_ids(source_ids(model, texts), tokenizers(model)[0].pad_id)  # (B, S) each
    device = next(model.parameters()).device
    return translate_batch(model, {"inputs": inputs.to(device), "mask": mask.to(device)}, **generation)
