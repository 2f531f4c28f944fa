"""Translation benchmark workloads: ours against the same work on reference libraries.

- Training (tokens/s, source + target tokens): one AdamW step of our encoder + seq2seq head
  against ``torch.nn.Transformer`` of the same size (pre-norm, GELU, one embedding shared by
  source, target and output as in our joint-vocabulary default, sinusoidal positions), on the
  same batch of random token ids with the same lengths and the same label-smoothed loss.
- Translation (sentences/s), greedy and beam 4: ``model.generate`` against Hugging Face
  ``MarianMTModel.generate`` with random weights of the same shape (``bench`` extra). Both
  decode exactly ``new_tokens`` tokens per sentence (our stop tokens off; Marian's
  ``min_new_tokens`` holds EOS back), so both do the same number of decoder steps.

``compile`` wraps the training forward passes of both sides with ``torch.compile``; the
generation loops run eagerly on both sides.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from heads.seq2seq import frame_targets
from tasks.engine.bench import decode_name, exact_generation, maybe_compile, random_tokens, seq2seq_pairs, train_step
from tasks.engine.task import Workload
from zoo.layers.position import sinusoidal_table
from zoo.tokenizer import Tokenizer

LABEL_SMOOTHING = 0.1


@dataclass(frozen=True)
class Shape:
    """Model size and batch shape shared by ours and the reference."""

    vocab: int
    dim: int
    encoder_depth: int
    decoder_depth: int
    heads: int
    batch: int           # sentences per training step
    source_len: int
    target_len: int      # target tokens without BOS/EOS (the decoder runs target_len + 1 positions)
    generate_batch: int  # sentences per generate call
    new_tokens: int      # tokens decoded per sentence

    def describe(self, batch: int, generate: bool) -> str:
        size = f"V={self.vocab} d={self.dim} enc={self.encoder_depth} dec={self.decoder_depth} h={self.heads}"
        if generate:
            return f"{size}, B={batch} src={self.source_len} new={self.new_tokens}"
        return f"{size}, B={batch} src={self.source_len} tgt={self.target_len}"


# The task's default model (text_encoder_tiny + 3-layer decoder, joint 4k vocabulary) and
# Bible-verse lengths (about 35 tokens a side on average).
FULL = Shape(vocab=4000, dim=128, encoder_depth=2, decoder_depth=3, heads=2, batch=64, source_len=40,
             target_len=40, generate_batch=32, new_tokens=40)
QUICK = Shape(vocab=1000, dim=64, encoder_depth=2, decoder_depth=2, heads=2, batch=8, source_len=16,
              target_len=16, generate_batch=4, new_tokens=8)


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool = False) -> list[tuple[Workload, Workload | None]]:
    """(ours, reference) pairs: training, greedy translation, beam-4 translation."""
    shape = QUICK if quick else FULL
    return seq2seq_pairs((train_ours, train_reference), (generate_ours, generate_reference), shape, device, compile,
                         shape.generate_batch)


def _ours(shape: Shape, device: torch.device) -> zoo.ZooModel:
    return zoo.create_model(
        "text_encoder_tiny", "seq2seq",
        backbone_args=dict(vocab_size=shape.vocab, dim=shape.dim, depth=shape.encoder_depth, heads=shape.heads),
        vocab_size=shape.vocab, depth=shape.decoder_depth, heads=shape.heads, share_embedding=True,
        label_smoothing=LABEL_SMOOTHING).to(device)


def train_ours(shape: Shape, device: torch.device, compile: bool, batch: int) -> Workload:
    """Our encoder + seq2seq head, one optimizer step on ``batch`` pairs."""
    model = _ours(shape, device).train()
    net = maybe_compile(model, compile)
    data = {"inputs": random_tokens(batch, shape.source_len, shape.vocab, device, seed=0),
            "mask": torch.ones(batch, shape.source_len, dtype=torch.bool, device=device),
            "targets": random_tokens(batch, shape.target_len, shape.vocab, device, seed=1),
            "target_mask": torch.ones(batch, shape.target_len, dtype=torch.bool, device=device)}
    step = train_step(model, lambda: model.loss(net(data), data)["loss"])
    return Workload("translation train (zoo seq2seq)", "tokens", batch * (shape.source_len + shape.target_len),
                    step, model, "train", batch, shape.describe(batch, False),
                    functools.partial(train_ours, shape, device, compile),
                    differs="same size; ours rotates queries and keys (RoPE) in every layer where nn.Transformer "
                            "adds one sinusoidal table")


class TorchTransformerMT(nn.Module):
    """``nn.Transformer`` translation model: shared embedding + sinusoidal positions, tied output."""

    def __init__(self, shape: Shape, max_len: int = 512) -> None:
        super().__init__()
        self.embed = nn.Embedding(shape.vocab, shape.dim)
        self.register_buffer("positions", sinusoidal_table(max_len, shape.dim), persistent=False)
        with warnings.catch_warnings():  # "enable_nested_tensor is True, but ... norm_first": an inference fast path
            warnings.simplefilter("ignore", UserWarning)
            self.transformer = nn.Transformer(shape.dim, shape.heads, shape.encoder_depth, shape.decoder_depth,
                                              4 * shape.dim, dropout=0.0, activation="gelu", batch_first=True,
                                              norm_first=True)
        self.proj = nn.Linear(shape.dim, shape.vocab, bias=False)
        self.proj.weight = self.embed.weight

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """source (B, S), target_in (B, T) -> logits (B, T, V)."""
        steps = target_in.shape[1]
        x = self.embed(source) + self.positions[:source.shape[1]]
        y = self.embed(target_in) + self.positions[:steps]
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=source.device)
        return self.proj(self.transformer(x, y, tgt_mask=causal, tgt_is_causal=True))


def train_reference(shape: Shape, device: torch.device, compile: bool, batch: int) -> Workload:
    """``torch.nn.Transformer`` of the same size, one optimizer step on the same shapes."""
    model = TorchTransformerMT(shape).to(device).train()
    net = maybe_compile(model, compile)
    source = random_tokens(batch, shape.source_len, shape.vocab, device, seed=0)
    targets = random_tokens(batch, shape.target_len, shape.vocab, device, seed=1)
    target_in, labels = frame_targets(targets, torch.ones_like(targets, dtype=torch.bool))  # (B, T+1), as our head

    def loss() -> torch.Tensor:
        logits = net(source, target_in).float()
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing=LABEL_SMOOTHING)

    return Workload("translation train (torch.nn.Transformer)", "tokens", batch * (shape.source_len + shape.target_len),
                    train_step(model, loss), model, "train", batch, shape.describe(batch, False),
                    functools.partial(train_reference, shape, device, compile))


def generate_ours(shape: Shape, device: torch.device, beams: int, batch: int) -> Workload:
    """``model.generate`` of ``new_tokens`` tokens for ``batch`` sources."""
    model = _ours(shape, device).eval()
    data = {"inputs": random_tokens(batch, shape.source_len, shape.vocab, device, seed=2),
            "mask": torch.ones(batch, shape.source_len, dtype=torch.bool, device=device)}
    step = functools.partial(model.generate, data, max_new_tokens=shape.new_tokens, beams=beams, stop_tokens=())
    return Workload(f"translate {decode_name(beams)} (zoo seq2seq)", "sentences", batch, step, model,
                    "inference", batch, shape.describe(batch, True),
                    functools.partial(generate_ours, shape, device, beams))


def generate_reference(shape: Shape, device: torch.device, beams: int, batch: int) -> Workload | None:
    """Hugging Face ``MarianMTModel.generate`` with random weights of the same shape; None without transformers."""
    try:
        from transformers import MarianConfig, MarianMTModel
    except ImportError:
        return None
    config = MarianConfig(vocab_size=shape.vocab, d_model=shape.dim, encoder_layers=shape.encoder_depth,
                          decoder_layers=shape.decoder_depth, encoder_attention_heads=shape.heads,
                          decoder_attention_heads=shape.heads, encoder_ffn_dim=4 * shape.dim,
                          decoder_ffn_dim=4 * shape.dim, max_position_embeddings=512, dropout=0.0,
                          pad_token_id=Tokenizer.pad_id, eos_token_id=Tokenizer.eos_id,
                          bos_token_id=Tokenizer.bos_id, decoder_start_token_id=Tokenizer.bos_id,
                          forced_eos_token_id=None)
    torch.manual_seed(0)
    model = MarianMTModel(config).to(device).eval()
    source = random_tokens(batch, shape.source_len, shape.vocab, device, seed=2)
    step = functools.partial(model.generate, input_ids=source, attention_mask=torch.ones_like(source),
                             generation_config=exact_generation(shape.new_tokens, beams))
    return Workload(f"translate {decode_name(beams)} (transformers Marian)", "sentences", batch, step, model,
                    "inference", batch, shape.describe(batch, True),
                    functools.partial(generate_reference, shape, device, beams))
