"""Sentiment benchmark workloads: training and inference sentences/s of the default model
(``text_encoder_tiny`` with learned positions + classification head) against Hugging Face
``transformers``' ``BertForSequenceClassification`` of the same shape (hidden size, layers, heads,
intermediate size, vocabulary, sequence length, dropout) with random weights, on the same padded
batches. Dropout is 0 on both sides: our shared MLP also drops its 4x-wide hidden activations
(timm's layout), which BERT does not, so with dropout the two steps would do different work.

Both sides get the same work per step: a forward pass (inference), or forward + cross-entropy
+ backward + AdamW step (training). The harness adds bf16 autocast and inference mode.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

import zoo
from tasks.engine.bench import maybe_compile, mode_step
from tasks.engine.task import Workload


@dataclass(frozen=True)
class Shape:
    """The architecture and batch both sides share."""

    vocab_size: int = 8000
    dim: int = 128
    depth: int = 2
    heads: int = 2
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    seq_len: int = 64
    classes: int = 2

    def describe(self, batch_size: int) -> str:
        return (f"dim {self.dim}, depth {self.depth}, heads {self.heads}, mlp {int(self.dim * self.mlp_ratio)}, "
                f"vocab {self.vocab_size}, batch {batch_size} x {self.seq_len} tokens (padded)")


FULL = (Shape(), 32)
QUICK = (Shape(seq_len=32), 8)


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool = False) -> list[tuple[Workload, Workload | None]]:
    """(ours, reference) for training and for inference; ``quick`` uses shorter, smaller batches."""
    shape, batch_size = QUICK if quick else FULL
    return [(_ours(shape, mode, device, compile, batch_size), _reference(shape, mode, device, compile, batch_size))
            for mode in ("train", "inference")]


def batch(shape: Shape, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Seeded random token ids (B, T), a right-padded mask (B, T) with lengths T/2..T, labels (B,)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, shape.vocab_size, (batch_size, shape.seq_len), generator=generator)
    lengths = torch.randint(shape.seq_len // 2, shape.seq_len + 1, (batch_size,), generator=generator)
    mask = torch.arange(shape.seq_len)[None, :] < lengths[:, None]  # (B, T)
    labels = torch.randint(0, shape.classes, (batch_size,), generator=generator)
    return {"inputs": (ids * mask).to(device), "mask": mask.to(device), "labels": labels.to(device)}


def _ours(shape: Shape, mode: str, device: torch.device, compile: bool, batch_size: int) -> Workload:
    backbone_args = dict(vocab_size=shape.vocab_size, dim=shape.dim, depth=shape.depth, heads=shape.heads,
                         mlp_ratio=shape.mlp_ratio, dropout=shape.dropout, position="learned", max_len=shape.seq_len)
    model = zoo.create_model("text_encoder_tiny", "classification", backbone_args=backbone_args,
                             num_classes=shape.classes, dropout=shape.dropout).to(device)
    net = maybe_compile(model, compile)
    data = batch(shape, batch_size, device)
    step = mode_step(model, mode, lambda: model.loss(net(data), data)["loss"], lambda: net(data)["logits"])
    return Workload(f"zoo text_encoder_tiny + classification ({mode})", "sentences", batch_size, step, model,
                    mode, batch_size, shape.describe(batch_size),
                    functools.partial(_ours, shape, mode, device, compile))


def _reference(shape: Shape, mode: str, device: torch.device, compile: bool, batch_size: int) -> Workload:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=shape.vocab_size, hidden_size=shape.dim, num_hidden_layers=shape.depth,
                        num_attention_heads=shape.heads, intermediate_size=int(shape.dim * shape.mlp_ratio),
                        max_position_embeddings=shape.seq_len, num_labels=shape.classes,
                        hidden_dropout_prob=shape.dropout, attention_probs_dropout_prob=shape.dropout,
                        attn_implementation="sdpa")
    model = BertForSequenceClassification(config).to(device)
    net = maybe_compile(model, compile)
    data = batch(shape, batch_size, device)
    ids, mask, labels = data["inputs"], data["mask"].long(), data["labels"]
    step = mode_step(model, mode, lambda: net(input_ids=ids, attention_mask=mask, labels=labels).loss,
                     lambda: net(input_ids=ids, attention_mask=mask).logits)
    return Workload(f"transformers BertForSequenceClassification ({mode})", "sentences", batch_size, step, model,
                    mode, batch_size, shape.describe(batch_size),
                    functools.partial(_reference, shape, mode, device, compile))
