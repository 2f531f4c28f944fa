"""Sequence-to-sequence decoder head: a causal stack of the shared block with cross-attention over
any backbone's ``Features`` (text for translation, audio for attention-based ASR, images for captioning).

The memory the decoder attends to is ``Features.tokens`` (B, S, Dc) with ``Features.mask`` (B, S)
whatever the modality: a text encoder's token states, a speech encoder's frames, a ViT's class
token and patch tokens (a ``timm/`` backbone's last feature map flattened to (B, h*w, C)).

Batch contract (docs/design.md): ``targets`` (B, L) token ids *without* BOS/EOS, right-padded, with
``target_mask`` (B, L) True on real tokens. The head frames them itself: the decoder reads
``[BOS] + targets`` and learns to predict ``targets + [EOS]``.

Decoding follows the step protocol of ``zoo.generation``: ``init_state`` runs the backbone once
and projects every layer's cross-attention keys/values once per source; ``step`` feeds new
target tokens through the decoder with a self-attention ``KVCache`` (or, with
``use_cache=False``, re-runs the decoder on every token so far: the reference path the tests
compare against). ``state.reorder`` selects rows of the cache, the cross keys/values and the
source mask together, which is all beam search needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from heads.base import Head, SoftOutputs
from heads.token_loss import IGNORE, smoothed_cross_entropy
from zoo.features import Features
from zoo.layers.attention import KVCache, attention_mask
from zoo.layers.block import BlockConfig
from zoo.layers.norm import make_norm
from zoo.layers.position import RotaryEmbedding
from zoo.layers.stack import Stack
from zoo.registry import HEADS
from zoo.tokenizer import Tokenizer


ContextKV = list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: keys, values (B, nh, S, hs)


@dataclass
class Seq2SeqState:
    """Decoding state of a batch of sources.

    Cross-attention keys/values depend on the source alone, so a reorder that leaves every row
    on the source whose keys/values it already holds (beam search reshuffling the beams of each
    source) copies nothing but the self-attention cache.
    """

    start: torch.Tensor                  # (B, 1) BOS, fed by the first step
    context_kv: ContextKV                # cross-attention keys/values of every layer
    context_mask: torch.Tensor | None    # (B, S) True = real source position, or None
    cache: KVCache | None                # decoder self-attention cache (None: uncached path)
    source: torch.Tensor                 # (B,) which source each row translates
    tokens: torch.Tensor | None = None   # uncached path: (B, T) every target token fed so far

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (beam search expands sources into beams and reorders them)."""
        source = self.source.index_select(0, index)
        if not torch.equal(source, self.source):
            self.context_kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.context_kv]
            if self.context_mask is not None:
                self.context_mask = self.context_mask.index_select(0, index)
        self.source = source
        self.start = self.start.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index)
        if self.tokens is not None:
            self.tokens = self.tokens.index_select(0, index)


def frame_targets(targets: torch.Tensor, target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher forcing: (decoder inputs ``[BOS] + targets``, labels ``targets + [EOS]``), both (B, L+1).

    Labels past each row's EOS are :data:`IGNORE`; decoder inputs there are padding, which the
    causal mask keeps away from every real position. Left padding is refused (checked in eager
    mode only: under ``torch.compile`` the check would break the graph).
    """
    if not torch.compiler.is_compiling() and bool((target_mask[:, 1:] & ~target_mask[:, :-1]).any()):
        raise ValueError("target_mask must be right-padded: real tokens first, then padding")
    batch = targets.shape[0]
    lengths = target_mask.sum(dim=1)  # (B,)
    body = targets.masked_fill(~target_mask, Tokenizer.pad_id)
    bos = body.new_full((batch, 1), Tokenizer.bos_id)
    inputs = torch.cat([bos, body], dim=1)  # (B, L+1)
    labels = torch.cat([body, body.new_full((batch, 1), Tokenizer.pad_id)], dim=1)  # (B, L+1)
    labels.scatter_(1, lengths[:, None], Tokenizer.eos_id)
    positions = torch.arange(labels.shape[1], device=labels.device)[None]  # (1, L+1)
    return inputs, labels.masked_fill(positions > lengths[:, None], IGNORE)


class Seq2SeqHead(Head):
    """Token embedding -> RoPE decoder stack (causal self-attention + cross-attention) -> norm -> tied projection."""

    accepts = ("text", "audio", "image")

    def __init__(self, context_dim: int, vocab_size: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, label_smoothing: float = 0.1,
                 embedding: nn.Embedding | None = None) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        if embedding is None:
            embedding = nn.Embedding(vocab_size, dim)
            nn.init.normal_(embedding.weight, std=0.02)
        self.embed = embedding
        self.rope = RotaryEmbedding(dim // heads)
        self.stack = Stack(BlockConfig(dim, heads, mlp_ratio, dropout=dropout, cross=True,
                                       context_dim=context_dim), depth)
        self.norm = make_norm("layer", dim)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, vocab_size, bias=False)
        self.proj.weight = self.embed.weight  # tied: one tensor, saved once

    def project_context(self, context: torch.Tensor) -> ContextKV:
        """Every layer's cross-attention keys/values of the (B, S, Dc) backbone tokens."""
        return [block.cross_attn.project_context(context) for block in self.stack.blocks]

    def decoder(self, tokens: torch.Tensor, context_kv: ContextKV, context_mask: torch.Tensor | None,
                cache: KVCache | None = None) -> torch.Tensor:
        """Decoder hidden states (B, T, D) of target tokens (B, T) that follow ``cache``'s positions."""
        steps = tokens.shape[1]
        offset = 0
        if cache is None:
            mask, is_causal = None, True
        else:
            key_mask = cache.append_mask(torch.ones_like(tokens, dtype=torch.bool))
            offset = cache.offset   # a static cache's position tensor: one graph for every step
            if cache.static or steps > 1:
                mask, is_causal = attention_mask(key_mask, steps, True, query_offset=offset)
            else:
                mask, is_causal = None, False  # one new token may see every cached one
        positions = torch.arange(steps, device=tokens.device) + offset  # (T,)
        cross_mask, _ = attention_mask(context_mask, steps, causal=False)
        x = self.drop(self.embed(tokens))
        x = self.stack(x, mask=mask, is_causal=is_causal, rope=self.rope, positions=positions, cache=cache,
                       context_kv=context_kv, context_mask=cross_mask)
        if cache is not None:
            cache.advance(steps)
        return self.norm(x)

    def forward(self, features: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Teacher-forced logits (B, L+1, V) and their labels (B, L+1) (EOS included, padding IGNORE)."""
        inputs, labels = frame_targets(batch["targets"], batch["target_mask"])
        hidden = self.decoder(inputs, self.project_context(features.tokens), features.mask)
        return {"logits": self.proj(hidden), "labels": labels}

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Label-smoothed cross-entropy (``loss``), the plain per-token NLL (``nll``, logged only) and
        the number of target tokens both are means over (``weight``, for accumulation)."""
        loss, nll = smoothed_cross_entropy(outputs["logits"], outputs["labels"], self.label_smoothing)
        return {"loss": loss, "nll": nll.detach(), "weight": (outputs["labels"] != IGNORE).sum()}

    def soft_outputs(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> SoftOutputs:
        """The teacher-forced logits (N, V) of the N scored target positions (EOS included)."""
        return SoftOutputs(outputs["logits"][outputs["labels"] != IGNORE])

    def decode(self, outputs: dict[str, torch.Tensor], **options: Any) -> list[list[int]]:
        """Teacher-forced argmax ids per row, up to (without) the first EOS."""
        rows = []
        for row in outputs["logits"].argmax(dim=-1).tolist():
            rows.append(row[:row.index(Tokenizer.eos_id)] if Tokenizer.eos_id in row else row)
        return rows

    # ---- step protocol -------------------------------------------------------------------
    def init_state(self, model: nn.Module, batch: dict[str, Any], use_cache: bool = True,
                   static_cache: bool = False, max_new_tokens: int = 0) -> Seq2SeqState:
        """Encode the sources once and project the cross-attention keys/values of every layer."""
        features = model.backbone(batch["inputs"], batch.get("mask"))
        rows = features.tokens.shape[0]
        cache = None
        if use_cache:
            cache = KVCache(len(self.stack.blocks), max_new_tokens + 1 if static_cache else None)
        device = features.tokens.device
        start = torch.full((rows, 1), Tokenizer.bos_id, dtype=torch.long, device=device)
        return Seq2SeqState(start, self.project_context(features.tokens), features.mask, cache,
                            torch.arange(rows, device=device))

    def step(self, model: nn.Module, tokens: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, Seq2SeqState]:
        """Feed (B, T) new target tokens; return the next-token logits (B, V)."""
        if state.cache is not None:
            hidden = self.decoder(tokens, state.context_kv, state.context_mask, state.cache)
        else:
            state.tokens = tokens if state.tokens is None else torch.cat([state.tokens, tokens], dim=1)
            hidden = self.decoder(state.tokens, state.context_kv, state.context_mask)
        return self.proj(hidden[:, -1]), state


@HEADS.register("seq2seq", accepts=("text", "audio", "image"))
def seq2seq(backbone: nn.Module, vocab_size: int, dim: int | None = None, depth: int = 4, heads: int = 4,
            mlp_ratio: float = 4.0, dropout: float = 0.0, label_smoothing: float = 0.1,
            share_embedding: bool = False) -> Seq2SeqHead:
    """Decoder head over ``backbone``'s features (``dim`` defaults to the backbone's).

    ``share_embedding`` reuses the backbone's token embedding as the decoder's (and so as the
    output projection): the three-way tying of a joint source/target vocabulary.
    """
    dim = dim or backbone.dim
    embedding = None
    if share_embedding:
        embedding = getattr(backbone, "embed", None)
        if not isinstance(embedding, nn.Embedding) or tuple(embedding.weight.shape) != (vocab_size, dim):
            shape = tuple(embedding.weight.shape) if isinstance(embedding, nn.Embedding) else None
            raise ValueError(f"share_embedding needs a backbone token embedding of shape ({vocab_size}, {dim}); "
                             f"this backbone has {shape}")
    head = Seq2SeqHead(backbone.dim, vocab_size, dim, depth, heads, mlp_ratio, dropout, label_smoothing, embedding)
    head.check_backbone(backbone)
    return head
