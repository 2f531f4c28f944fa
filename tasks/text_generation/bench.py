"""Text-generation benchmark workloads: our decoder + LM head against Hugging Face GPT-2.

The reference is ``transformers.GPT2LMHeadModel`` with random weights of the same shape as
ours (``text_decoder_gpt2`` + ``lm``: learned positions, pre-norm blocks, exact GELU, tied
output projection; a smaller GPT-2 shape for the prefill/decode rows when quick). Rows:

- ``prefill`` at batch 1 and 8: one forward over a prompt that fills the KV cache and gives
  the last position's logits (tokens/s = prompt tokens).
- ``decode`` at batch 1 and 8, with and without the KV cache: ``model.generate`` against
  ``GPT2LMHeadModel.generate(use_cache=...)``, greedy, exactly ``new_tokens`` new tokens per
  row (our stop tokens off, the reference's EOS held back by ``min_new_tokens``); tokens/s
  counts new tokens, the prompt's prefill included as in real use.
- ``decode with cache, int8 weights`` (CPU, fp32 runs): batch-1 decode of an int8 copy of ours
  (``zoo.quantize``, dynamic: int8 weights and per-token int8 inputs of every Linear, int8 embedding
  rows) against the reference's fp32 ``generate``; its tokens may differ from fp32 greedy ones.
- ``kv cache``: decode steps alone (the 256-token prompt fed once, outside the timing), batch
  1, with our cache against without it (every step reruns the whole sequence); the row's
  ratio is the cache's speed-up per generated token.
- ``weight read``: batch-1 decode steps alone of the GPT-2-small shape with the cache,
  counted as GB of weights and KV cache read per second, against a read-only stream (a sum)
  over a buffer as large as one step's reads and at least 4x the last-level cache, same
  threads. The row's ratio is decode's fraction of that read bandwidth.

At ``bf16`` the inference models hold bf16 weights (as one serves them), not fp32 weights
cast by autocast on every step. Our decoding uses the static (preallocated) KV cache, as
``generate`` does by default; with ``compile`` our backbone runs under ``torch.compile`` and the
reference's forward is compiled too.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import zoo
from tasks.engine.bench import maybe_compile, random_tokens
from tasks.engine.task import Workload
from heads.lm import LMState
from zoo.layers.attention import KVCache


@dataclass(frozen=True)
class Shape:
    """A GPT-2 shape and the lengths the rows use."""

    vocab: int
    dim: int
    depth: int
    heads: int
    positions: int
    prompt: int           # prompt tokens of the prefill and decode rows
    new_tokens: int       # tokens decoded per row with the cache
    uncached_new_tokens: int  # ... and without it (each of those steps reruns the whole sequence)

    def describe(self, batch: int, new_tokens: int | None = None) -> str:
        size = f"V={self.vocab} d={self.dim} L={self.depth} h={self.heads}"
        lengths = f"prompt={self.prompt}" + (f" new={new_tokens}" if new_tokens is not None else "")
        return f"{size}, B={batch} {lengths}"


GPT2 = dict(vocab=50257, dim=768, depth=12, heads=12, positions=1024)
GPT2_SMALLER = dict(vocab=8192, dim=256, depth=4, heads=4, positions=512)
BANDWIDTH_PROMPT, BANDWIDTH_STEPS = 16, 4      # the weight-read row: short prompt, a few decode steps
BATCHES = (1, 8)
KV_PROMPT = 256                                # prompt of the cache speed-up row
INT8 = ", int8 weights"                        # the CPU row of batch-1 decode with zoo.quantize's int8 layers
INT8_AIM = 1.3                                 # int8 batch-1 decode against transformers' fp32 generate
READ_AIMS = {"fp32": 0.9, "bf16": 0.8}         # batch-1 decode's weight read as a fraction of the read-only stream


def shapes(device: torch.device, quick: bool) -> Shape:
    """The GPT-2-small shape with a 256-token prompt; smaller shapes and lengths on a CPU and when quick."""
    if device.type == "cuda":
        return Shape(**(GPT2_SMALLER if quick else GPT2), prompt=256, new_tokens=32 if quick else 128,
                     uncached_new_tokens=32 if quick else 128)
    if quick:
        return Shape(**GPT2_SMALLER, prompt=64, new_tokens=8, uncached_new_tokens=4)
    return Shape(**GPT2, prompt=256, new_tokens=16, uncached_new_tokens=4)


def workloads(device: torch.device, precision: str, quick: bool,
              compile: bool | str = False) -> list[tuple[Workload, Workload | None]]:
    """Every (ours, reference) pair of the text-generation benchmark."""
    shape = shapes(device, quick)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    ours = _ours(shape, device, dtype, compile)
    reference = _reference(shape, device, dtype, compile)
    pairs: list[tuple[Workload, Workload | None]] = [
        (prefill(ours, shape, device, batch),
         prefill(reference, shape, device, batch, True) if reference is not None else None) for batch in BATCHES]
    pairs += [(decode(ours, shape, device, use_cache, compile, batch),
               decode(reference, shape, device, use_cache, compile, batch, True) if reference is not None else None)
              for use_cache in (True, False) for batch in BATCHES]
    if device.type == "cpu" and precision == "fp32" and reference is not None:
        pairs.append((replace(decode(int8_copy(ours), shape, device, True, compile, 1, variant=INT8), aim=INT8_AIM),
                      decode(reference, shape, device, True, compile, 1, True)))
    long = replace(shape, prompt=KV_PROMPT)
    pairs.append((decode_steps(ours, long, device, True, compile, "kv cache: decode steps with it"),
                  decode_steps(ours, long, device, False, compile, "kv cache: decode steps without it")))
    full = Shape(**GPT2, prompt=BANDWIDTH_PROMPT, new_tokens=BANDWIDTH_STEPS, uncached_new_tokens=0)
    is_gpt2 = all(getattr(shape, key) == value for key, value in GPT2.items())
    weights = ours if is_gpt2 else _ours(full, device, dtype, compile)
    read = weight_read(weights, full, device, compile)
    ceiling = ceiling_bytes(device, int(read.items * 1e9 / full.new_tokens), last_level_cache_bytes())
    pairs.append((replace(read, aim=READ_AIMS.get(precision, READ_AIMS["fp32"])), memory_read(device, ceiling)))
    return pairs


# ---- models ---------------------------------------------------------------------------------

def _ours(shape: Shape, device: torch.device, dtype: torch.dtype, compile: bool | str) -> nn.Module:
    """``text_decoder_gpt2`` + ``lm`` of ``shape`` (compiled backbone when asked)."""
    torch.manual_seed(0)
    model = zoo.create_model("text_decoder_gpt2", "lm", backbone_args=dict(
        vocab_size=shape.vocab, dim=shape.dim, depth=shape.depth, heads=shape.heads, max_len=shape.positions))
    model = model.to(device=device, dtype=dtype).eval()
    if compile:
        model.backbone.forward = maybe_compile(model.backbone.forward, compile)
    return model


def int8_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with int8 Linear and embedding weights (``zoo.quantize`` dynamic: int8 x int8 GEMV)."""
    int8 = copy.deepcopy(model)
    zoo.quantize(int8, "dynamic")
    return int8


def _reference(shape: Shape, device: torch.device, dtype: torch.dtype, compile: bool | str) -> nn.Module | None:
    """``GPT2LMHeadModel`` of ``shape`` with random weights; None without ``transformers`` (the bench extra)."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    config = GPT2Config(vocab_size=shape.vocab, n_positions=shape.positions, n_embd=shape.dim, n_layer=shape.depth,
                        n_head=shape.heads, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).to(device=device, dtype=dtype).eval()
    if compile:
        model.forward = maybe_compile(model.forward, compile)
    return model


def _tokens(batch: int, length: int, vocab: int, device: torch.device) -> torch.Tensor:
    return random_tokens(batch, length, vocab, device, seed=batch * 1000 + length)


# ---- prefill --------------------------------------------------------------------------------

def prefill(model: nn.Module, shape: Shape, device: torch.device, batch: int, reference: bool = False) -> Workload:
    """One cache-filling forward over ``batch`` prompts giving the last position's logits: ours, or with
    ``reference`` the same forward of ``GPT2LMHeadModel`` (``use_cache=True``, ``logits_to_keep=1``)."""
    prompt = _tokens(batch, shape.prompt, shape.vocab, device)

    def step() -> torch.Tensor:
        if reference:
            return model(input_ids=prompt, use_cache=True, logits_to_keep=1).logits
        features = model.backbone(prompt, cache=model.backbone.new_cache())
        return model.head.proj(features.tokens[:, -1])

    return Workload(f"prefill ({'transformers GPT-2' if reference else 'zoo decoder'})", "tokens",
                    batch * shape.prompt, step, model, "inference", batch, shape.describe(batch),
                    functools.partial(prefill, model, shape, device, reference=reference))


# ---- decode ---------------------------------------------------------------------------------

def decode(model: nn.Module, shape: Shape, device: torch.device, use_cache: bool, compile: bool | str,
           batch: int, reference: bool = False, variant: str = "") -> Workload:
    """``model.generate``: greedy, exactly ``new_tokens`` tokens per row (static cache); with
    ``reference``, ``GPT2LMHeadModel.generate(use_cache=...)`` with EOS held back: the same number of steps.
    ``variant`` names what differs from the plain model in the row's name (", int8 weights")."""
    prompt = _tokens(batch, shape.prompt, shape.vocab, device)
    new = shape.new_tokens if use_cache else shape.uncached_new_tokens
    if reference:
        from transformers import GenerationConfig

        config = GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=False, num_beams=1,
                                  use_cache=use_cache, pad_token_id=0, eos_token_id=0)
        step = functools.partial(model.generate, input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                 generation_config=config)
    else:
        step = functools.partial(model.generate, {"inputs": prompt}, max_new_tokens=new, stop_tokens=(),
                                 use_cache=use_cache, static_cache=use_cache)
    cache = "with" if use_cache else "without"
    return Workload(f"decode {cache} cache{variant} ({'transformers' if reference else 'zoo'} generate)", "tokens",
                    batch * new, step, model, "inference", batch, shape.describe(batch, new),
                    functools.partial(decode, model, shape, device, use_cache, compile, reference=reference,
                                      variant=variant))


# ---- decode steps alone: the cache's speed-up and the weight-read bandwidth ----------------------------

def decode_steps(model: nn.Module, shape: Shape, device: torch.device, use_cache: bool, compile: bool | str,
                 name: str) -> Workload:
    """``shape.new_tokens`` greedy batch-1 steps of the LM head's step protocol after a prompt fed once,
    at build time; every ``step()`` starts again from that prefilled state."""
    prompt = _tokens(1, shape.prompt, shape.vocab, device)
    head = model.head
    with torch.inference_mode():
        state = head.init_state(model, {"inputs": prompt}, use_cache=use_cache,
                                static_cache=use_cache, max_new_tokens=shape.new_tokens)
        logits, state = head.step(model, state.start, state)
    rewind = _rewinder(state)
    first = logits.argmax(dim=-1, keepdim=True)  # (1, 1)

    def step() -> torch.Tensor:
        fresh, token = rewind(), first
        for _ in range(shape.new_tokens):
            logits, fresh = head.step(model, token, fresh)
            token = logits.argmax(dim=-1, keepdim=True)
        return token

    return Workload(name, "tokens", shape.new_tokens, step, model, "inference", 1,
                    shape.describe(1, shape.new_tokens) + (", decode steps only" if use_cache else
                                                           ", decode steps only, each over the whole sequence"))


def _rewinder(state: LMState) -> Callable[[], LMState]:
    """A function giving a generation state equal to ``state`` now, however far it is decoded since.

    Dynamic caches and uncached states grow by concatenation (new tensors), so the saved
    references stay valid; a static cache is written in place only from its write ``position``
    on, which the rewound copy resets.
    """
    cache = state.cache
    if cache is not None:
        keys, values, length, slot = list(cache.keys), list(cache.values), cache.length, cache.position
        key_mask, position = cache.key_mask.clone(), cache.next_position.clone()

    def rewind() -> LMState:
        fresh = None
        if cache is not None:
            fresh = KVCache(len(keys), cache.capacity)
            fresh.keys, fresh.values, fresh.length, fresh.position = list(keys), list(values), length, slot
            fresh.key_mask, fresh.next_position = key_mask.clone(), position.clone()
        return LMState(state.start, state.start_mask, fresh, state.tokens, state.mask, started=True)

    return rewind


def weight_bytes(model: nn.Module) -> int:
    """Bytes of weights one decode step reads: every parameter once (tied ones once), except the
    position table, of which it reads one row."""
    skip = {id(model.backbone.pos_embed.weight)} if getattr(model.backbone, "pos_embed", None) is not None else set()
    return sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in skip)


def kv_bytes(model: nn.Module, shape: Shape) -> int:
    """Bytes of keys and values the ``shape.new_tokens`` batch-1 decode steps after the prompt read: step i
    attends to the prompt, the start token and the i tokens before it, at every layer, in the cache's dtype."""
    element = next(model.parameters()).element_size()
    positions = sum(shape.prompt + 1 + i for i in range(1, shape.new_tokens + 1))
    return 2 * shape.depth * shape.dim * positions * element


def weight_read(model: nn.Module, shape: Shape, device: torch.device, compile: bool | str) -> Workload:
    """Cached batch-1 decode steps counted as GB read: the weights once per step plus the KV cache
    (:func:`decode_steps`, :func:`kv_bytes`)."""
    steps = decode_steps(model, shape, device, True, compile, "weight read: batch-1 decode steps (zoo)")
    nbytes, cache = weight_bytes(model), kv_bytes(model, shape)
    return Workload(steps.name, "GB", (shape.new_tokens * nbytes + cache) / 1e9, steps.step, model, "inference", 1,
                    f"{steps.config}, {nbytes / 1e6:.0f} MB of weights per step + {cache / 1e6:.1f} MB of KV in all")


def last_level_cache_bytes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """The CPU's last-level cache size from sysfs (the highest ``index*/level``), None where sysfs has none."""
    sizes: dict[int, int] = {}
    for index in root.glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip()            # e.g. "32768K"
        except (OSError, ValueError):
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
        if number.isdigit():
            sizes[level] = max(sizes.get(level, 0), int(number) * unit)
    return sizes[max(sizes)] if sizes else None


def ceiling_bytes(device: torch.device, nbytes: int, cache_bytes: int | None) -> int:
    """The read ceiling's buffer: as large as what decode reads, and at least 4x the last-level cache
    (the GPU's L2 on CUDA) so that no part of it is served from a cache."""
    if device.type == "cuda":
        cache_bytes = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", None)
    return max(nbytes, 4 * cache_bytes) if cache_bytes else nbytes


def memory_read(device: torch.device, nbytes: int) -> Workload:
    """Sum a float32 buffer of ``nbytes`` (read only, as decode reads its weights): items = GB read."""
    source = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)

    def step() -> torch.Tensor:
        return source.sum()

    return Workload("weight read: read-only stream (sum)", "GB", source.numel() * 4 / 1e9, step, None, "inference", 1,
                    f"sum of {source.numel() * 4 / 1e6:.0f} MB")
