"""Captioning benchmark workloads: ours against transformers ``VisionEncoderDecoderModel`` (ViT + GPT-2,
random weights) of the same shape.

- Training (images/s): one AdamW step of our ViT + seq2seq head against the reference on the same
  images and the same target token ids (the reference's labels are the targets + EOS, as ours).
- Captioning (images/s), greedy and beam 4: ``model.generate`` against the reference's ``generate``,
  both decoding exactly ``new_tokens`` tokens per image (our stop tokens off; the reference's
  ``min_new_tokens`` holds EOS back).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import zoo
from heads.seq2seq import frame_targets
from tasks.engine.bench import decode_name, exact_generation, maybe_compile, random_tokens, seq2seq_pairs, train_step
from tasks.engine.task import Workload
from zoo.tokenizer import Tokenizer


@dataclass(frozen=True)
class Shape:
    """Model size and batch shape shared by ours and the reference."""

    image: int
    patch: int
    dim: int
    encoder_depth: int
    decoder_depth: int
    heads: int
    vocab: int
    batch: int
    target_len: int     # caption tokens without BOS/EOS
    new_tokens: int

    def describe(self, batch: int) -> str:
        return (f"{self.image}px/{self.patch} d={self.dim} enc={self.encoder_depth} dec={self.decoder_depth} "
                f"h={self.heads} V={self.vocab}, B={batch} tgt={self.target_len}")


FULL = Shape(image=128, patch=16, dim=128, encoder_depth=4, decoder_depth=2, heads=4, vocab=128, batch=32,
             target_len=24, new_tokens=24)      # the task's defaults on the built-in scenes
QUICK = Shape(image=32, patch=16, dim=32, encoder_depth=1, decoder_depth=1, heads=2, vocab=64, batch=2,
              target_len=6, new_tokens=4)


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool = False) -> list[tuple[Workload, Workload | None]]:
    """(ours, reference) pairs: training, greedy captioning, beam-4 captioning."""
    shape = QUICK if quick else FULL
    return seq2seq_pairs((train_ours, train_reference), (generate_ours, generate_reference), shape, device, compile,
                         shape.batch)


def _ours(shape: Shape, device: torch.device) -> zoo.ZooModel:
    return zoo.create_model("vit_tiny", "seq2seq", backbone_args=dict(
        img_size=shape.image, patch_size=shape.patch, dim=shape.dim, depth=shape.encoder_depth, heads=shape.heads),
        vocab_size=shape.vocab, depth=shape.decoder_depth, heads=shape.heads).to(device)


def _images(shape: Shape, batch: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, shape.image, shape.image, generator=generator).to(device)  # (B, 3, S, S)


def train_ours(shape: Shape, device: torch.device, compile: bool, batch: int) -> Workload:
    """Our ViT + seq2seq head, one optimizer step on ``batch`` images."""
    model = _ours(shape, device).train()
    net = maybe_compile(model, compile)
    data = {"inputs": _images(shape, batch, device),
            "targets": random_tokens(batch, shape.target_len, shape.vocab, device, seed=1),
            "target_mask": torch.ones(batch, shape.target_len, dtype=torch.bool, device=device)}
    step = train_step(model, lambda: model.loss(net(data), data)["loss"])
    return Workload("captioning train (zoo vit + seq2seq)", "images", batch, step, model, "train", batch,
                    shape.describe(batch), functools.partial(train_ours, shape, device, compile))


def _reference(shape: Shape, device: torch.device):
    """``VisionEncoderDecoderModel`` of ViT + GPT-2 with random weights of ``shape``; None without transformers."""
    try:
        from transformers import GPT2Config, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel
    except ImportError:
        return None
    encoder = ViTConfig(image_size=shape.image, patch_size=shape.patch, hidden_size=shape.dim,
                        num_hidden_layers=shape.encoder_depth, num_attention_heads=shape.heads,
                        intermediate_size=4 * shape.dim, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    decoder = GPT2Config(vocab_size=shape.vocab, n_embd=shape.dim, n_layer=shape.decoder_depth, n_head=shape.heads,
                         n_positions=256, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, add_cross_attention=True,
                         is_decoder=True, bos_token_id=Tokenizer.bos_id, eos_token_id=Tokenizer.eos_id,
                         pad_token_id=Tokenizer.pad_id)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id = Tokenizer.bos_id, Tokenizer.pad_id
    config.eos_token_id = Tokenizer.eos_id
    torch.manual_seed(0)
    return VisionEncoderDecoderModel(config=config).to(device)


def train_reference(shape: Shape, device: torch.device, compile: bool, batch: int) -> Workload | None:
    """The reference, one optimizer step on the same images and targets (+ EOS), label-smoothed like ours."""
    model = _reference(shape, device)
    if model is None:
        return None
    model.train()
    net = maybe_compile(model, compile)
    images = _images(shape, batch, device)
    targets = random_tokens(batch, shape.target_len, shape.vocab, device, seed=1)
    decoder_inputs, labels = frame_targets(targets, torch.ones_like(targets, dtype=torch.bool))  # (B, L+1), as ours

    def loss() -> torch.Tensor:
        logits = net(pixel_values=images, decoder_input_ids=decoder_inputs).logits.float()
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing=0.1)

    return Workload("captioning train (transformers VisionEncoderDecoder)", "images", batch, train_step(model, loss),
                    model, "train", batch, shape.describe(batch), functools.partial(train_reference, shape, device,
                                                                                    compile))


def generate_ours(shape: Shape, device: torch.device, beams: int, batch: int) -> Workload:
    """``model.generate`` of ``new_tokens`` tokens for ``batch`` images."""
    model = _ours(shape, device).eval()
    data = {"inputs": _images(shape, batch, device)}
    step = functools.partial(model.generate, data, max_new_tokens=shape.new_tokens, beams=beams, stop_tokens=())
    return Workload(f"caption {decode_name(beams)} (zoo vit + seq2seq)", "images", batch, step, model, "inference",
                    batch, shape.describe(batch), functools.partial(generate_ours, shape, device, beams))


def generate_reference(shape: Shape, device: torch.device, beams: int, batch: int) -> Workload | None:
    """The reference's ``generate`` of exactly ``new_tokens`` tokens per image."""
    model = _reference(shape, device)
    if model is None:
        return None
    model.eval()
    step = functools.partial(model.generate, pixel_values=_images(shape, batch, device),
                             generation_config=exact_generation(shape.new_tokens, beams))
    return Workload(f"caption {decode_name(beams)} (transformers VisionEncoderDecoder)", "images", batch, step,
                    model, "inference", batch, shape.describe(batch),
                    functools.partial(generate_reference, shape, device, beams))
