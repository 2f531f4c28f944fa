"""Speech translation benchmark workloads, in seconds of audio per second (the inverse real-time factor).

Pairs of (ours, reference) on the same random waveforms and target ids:

- Training: one AdamW step of the task's default model (``speech_encoder_tiny`` narrowed as ASR's
  default + the seq2seq head, 2 layers) on the label-smoothed loss, against
  ``torchaudio.models.Conformer`` of the same width, depth, heads, feed-forward and kernel behind
  the same front end and subsampling (the ``torchaudio/conformer`` backbone, as ASR's benchmark
  builds it) + ``torch.nn.TransformerDecoder`` of the same width, depth and heads (pre-norm, GELU,
  sinusoidal positions, tied output projection) with the same loss.
- Translation, greedy, exactly ``new_tokens`` tokens per clip (stop tokens off): ``model.generate``
  (self-attention cache, cross-attention keys/values projected once) against the reference's
  greedy loop (encoder once, then ``nn.TransformerDecoder`` over the whole prefix at every step:
  it has no cache).

Precision (bf16 autocast) and inference mode are applied by the harness; ``compile`` wraps the
training forward passes of both sides with ``torch.compile``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from heads.seq2seq import IGNORE, frame_targets
from tasks.asr.bench import CONFORMER_DIFFERS, ENCODER, _model, _waves, shape_text
from tasks.asr.task import BACKBONE_DEFAULTS, HEAD_DEFAULTS
from tasks.engine.bench import maybe_compile, random_tokens, train_step
from tasks.engine.task import Workload
from zoo.layers.position import sinusoidal_table
from zoo.tokenizer import Tokenizer

LABEL_SMOOTHING = 0.1   # the seq2seq head's default


@dataclass(frozen=True)
class Shape:
    """Vocabulary, batch, clip length and target lengths shared by ours and the reference."""

    vocab: int
    batch: int
    seconds: float
    target_len: int      # target tokens without BOS/EOS in training
    new_tokens: int      # tokens decoded per clip


def shape(device: torch.device, quick: bool) -> Shape:
    """Busy shapes on a GPU; on a CPU, ``quick`` keeps every step well under two seconds."""
    if device.type == "cuda":
        return Shape(256, 32, 4.0, 24, 24) if quick else Shape(256, 128, 4.0, 24, 24)
    return Shape(256, 2, 2.0, 12, 8) if quick else Shape(256, 8, 4.0, 24, 24)


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool | str = False) -> list[tuple[Workload, Workload | None]]:
    """(ours, reference) pairs: training and greedy translation, each against Conformer + TransformerDecoder."""
    size = shape(device, quick)
    return [(replace(train_workload("ours", device, compile, size), differs=CONFORMER_DIFFERS),
             train_workload("reference", device, compile, size)),
            (replace(greedy_workload("ours", device, size), differs=CONFORMER_DIFFERS),
             greedy_workload("reference", device, size))]


class ConformerTransformer(nn.Module):
    """The reference: torchaudio's Conformer (zoo's ``torchaudio/conformer`` backbone) + ``nn.TransformerDecoder``."""

    def __init__(self, vocab: int, depth: int, heads: int, device: torch.device, max_len: int = 512) -> None:
        super().__init__()
        self.backbone = _model("conformer", device).backbone
        dim = self.backbone.dim
        self.embed = nn.Embedding(vocab, dim)
        self.register_buffer("positions", sinusoidal_table(max_len, dim), persistent=False)
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, depth, norm=nn.LayerNorm(dim))
        self.proj = nn.Linear(dim, vocab, bias=False)
        self.proj.weight = self.embed.weight
        self.to(device)

    def encode(self, inputs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (B, S) + mask -> encoder states (B, T, D) and their padding mask (B, T), True = padding."""
        features = self.backbone(inputs, mask)
        return features.tokens, ~features.mask

    def decode(self, tokens: torch.Tensor, memory: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Target tokens (B, L) over encoder states -> logits (B, L, V)."""
        steps = tokens.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=tokens.device)
        x = self.embed(tokens) + self.positions[:steps]
        return self.proj(self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True,
                                      memory_key_padding_mask=padding))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits (B, L+1, V) and labels (B, L+1), framed as the seq2seq head frames them."""
        inputs, labels = frame_targets(batch["targets"], batch["target_mask"])
        return self.decode(inputs, *self.encode(batch["inputs"], batch["mask"])), labels


def _ours(vocab: int, device: torch.device) -> zoo.ZooModel:
    """The task's default model (ASR's narrowed encoder + seq2seq head defaults) over ``vocab`` pieces."""
    torch.manual_seed(0)
    return zoo.create_model(ENCODER, "seq2seq", backbone_args=BACKBONE_DEFAULTS, vocab_size=vocab,
                            label_smoothing=LABEL_SMOOTHING, **HEAD_DEFAULTS["seq2seq"]).to(device)


def _reference(vocab: int, device: torch.device) -> ConformerTransformer:
    torch.manual_seed(0)
    return ConformerTransformer(vocab, HEAD_DEFAULTS["seq2seq"]["depth"], HEAD_DEFAULTS["seq2seq"]["heads"], device)


def _batch(size: Shape, device: torch.device) -> dict[str, torch.Tensor]:
    """Random waveforms (B, S) with their mask and random target ids (B, L) past the special ids."""
    data = _waves(size.batch, size.seconds, device)
    data["targets"] = random_tokens(size.batch, size.target_len, size.vocab, device, seed=1)
    data["target_mask"] = torch.ones(size.batch, size.target_len, dtype=torch.bool, device=device)
    return data


def _describe(model: nn.Module, size: Shape, batch: int, extra: str) -> str:
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return shape_text(batch, size.seconds, f"V={size.vocab}, {extra}, {params:.1f}M parameters")


def train_workload(side: str, device: torch.device, compile: bool | str, size: Shape) -> Workload:
    """One AdamW step on the label-smoothed loss: ``ours`` or the ``reference``."""
    data = _batch(size, device)
    if side == "ours":
        model = _ours(size.vocab, device).train()
        net = maybe_compile(model, compile)
        loss = lambda: model.loss(net(data), data)["loss"]  # noqa: E731
        name = f"zoo {ENCODER} + seq2seq"
    else:
        model = _reference(size.vocab, device).train()
        net = maybe_compile(model, compile)

        def loss() -> torch.Tensor:
            logits, labels = net(data)
            return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                   label_smoothing=LABEL_SMOOTHING)
        name = "torchaudio Conformer + nn.TransformerDecoder"
    return Workload(f"speech translation train ({name})", "audio seconds", size.batch * size.seconds,
                    train_step(model, loss), model, "train", size.batch,
                    _describe(model, size, size.batch, f"tgt={size.target_len}"),
                    lambda batch: train_workload(side, device, compile, replace(size, batch=batch)))


def greedy_workload(side: str, device: torch.device, size: Shape) -> Workload:
    """Greedy translation of ``new_tokens`` tokens per clip: ``ours`` (``model.generate``) or the ``reference``."""
    data = _batch(size, device)
    if side == "ours":
        model = _ours(size.vocab, device).eval()
        step = functools.partial(model.generate, data, max_new_tokens=size.new_tokens, stop_tokens=())
        name = f"zoo {ENCODER} + seq2seq"
    else:
        model = _reference(size.vocab, device).eval()
        step = functools.partial(reference_greedy, model, data, size.new_tokens)
        name = "torchaudio Conformer + nn.TransformerDecoder"
    return Workload(f"speech translation greedy ({name})", "audio seconds", size.batch * size.seconds, step, model,
                    "inference", size.batch, _describe(model, size, size.batch, f"new={size.new_tokens}"),
                    lambda batch: greedy_workload(side, device, replace(size, batch=batch)))


def reference_greedy(model: ConformerTransformer, batch: dict[str, torch.Tensor], new_tokens: int) -> torch.Tensor:
    """``new_tokens`` greedy ids per clip (B, new_tokens): the encoder once, the decoder over the prefix each step."""
    memory, padding = model.encode(batch["inputs"], batch["mask"])
    tokens = torch.full((memory.shape[0], 1), Tokenizer.bos_id, dtype=torch.long, device=memory.device)
    for _ in range(new_tokens):
        logits = model.decode(tokens, memory, padding)[:, -1]  # (B, V)
        tokens = torch.cat([tokens, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return tokens[:, 1:]

