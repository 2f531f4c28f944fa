"""Greedy and beam decoding in numpy over exported decoder-step graphs (``zoo predict --runtime onnx``).

The numpy twin of :mod:`zoo.generation`'s greedy loop and beam search, same rules and same tokens, over a
:class:`Stepper`: ``start`` (B, T0) the tokens fed first, ``step(tokens (B, T)) -> logits (B, V)`` of the
last position, and ``reorder(index)`` selecting rows of the decoding state (beam search). A task's export
module builds the stepper from its graphs; :class:`StepState` holds the arrays the decoder-step graph
reads and returns: a static KV cache of fixed capacity (``past_keys``/``past_values`` (layers, B, heads,
capacity, head_dim), ``past_key_mask`` (B, capacity)) written at the ``position`` input, plus whatever
else the task feeds back (its ``present_<name>`` outputs become the next step's ``past_<name>`` inputs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tasks.engine.export import Runner, refuse_option

PAST, PRESENT = "past_", "present_"     # a fed-back state array's input and output name prefixes


class Stepper(Protocol):
    start: np.ndarray

    def step(self, tokens: np.ndarray) -> np.ndarray: ...

    def reorder(self, index: np.ndarray) -> None: ...


@dataclass
class StepState:
    """Named arrays fed to a decoder-step graph, the axis along which each holds rows, and the write position."""

    arrays: dict[str, np.ndarray]
    row_axes: dict[str, int]
    position: int = 0
    fixed: dict[str, np.ndarray] = field(default_factory=dict)   # inputs that never change (beam rows aside)

    def feed(self, graph: Runner, tokens: np.ndarray) -> np.ndarray:
        """Run one step on ``tokens`` (B, T); keep the graph's ``present_*`` outputs; the (B, V) logits."""
        out = graph.run(tokens=tokens, position=np.array(self.position, dtype=np.int64), **self.fixed,
                        **{PAST + name: value for name, value in self.arrays.items()})
        self.arrays = {name: out[PRESENT + name] for name in self.arrays}
        self.position += tokens.shape[1]
        return out["logits"]

    def reorder(self, index: np.ndarray) -> None:
        """Keep rows ``index`` of every array."""
        self.arrays = {n: np.take(a, index, axis=self.row_axes[n]) for n, a in self.arrays.items()}
        self.fixed = {n: np.take(a, index, axis=self.row_axes[n]) for n, a in self.fixed.items()}


def static_cache(keys: np.ndarray, capacity: int) -> np.ndarray:
    """(layers, B, heads, T, head_dim) keys or values placed in the first T slots of ``capacity`` zeros."""
    layers, rows, heads, steps, width = keys.shape
    cache = np.zeros((layers, rows, heads, capacity, width), dtype=keys.dtype)
    cache[:, :, :, :steps] = keys
    return cache


def loop_inputs(batch: dict[str, Any], keep: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) ``inputs`` and ``mask`` of a collated batch as numpy, as a stepper starts from them: the
    batch's mask, all real when it has none (a language model's block of its token stream); only the
    first ``keep`` positions when given (prompts that leave room for new tokens)."""
    inputs = batch["inputs"].cpu().numpy()
    mask = batch["mask"].cpu().numpy() if batch.get("mask") is not None else np.ones(inputs.shape[:2], dtype=bool)
    if keep is not None:
        inputs, mask = inputs[:, :max(keep, 1)], mask[:, :max(keep, 1)]
    return inputs, mask


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis in float32 (the torch loops' ``logits.float().log_softmax(-1)``)."""
    logits = logits.astype(np.float32)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _top(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest values of each row, best first (ties: lowest index first)."""
    return np.argsort(-values, axis=-1, kind="stable")[:, :count]


def check_options(temperature: float = 0.0, stream: bool = False, no_repeat_ngram_size: int = 0,
                  **unused: object) -> None:
    """Refuse the generation options the numpy loops do not implement (sampling, streaming, n-gram
    blocking); the others (``top_k``, ``top_p``, ``seed``) only act when sampling."""
    refuse_option(f"--temperature {temperature} (sampling)", temperature > 0)
    refuse_option("--stream", stream)
    refuse_option(f"--no-repeat-ngram {no_repeat_ngram_size} (n-gram blocking)", no_repeat_ngram_size > 0)


def greedy(stepper: Stepper, max_new_tokens: int, stops: tuple[int, ...]) -> list[list[int]]:
    """Greedy new tokens per row, the stop token excluded (as ``zoo.generation.generate``)."""
    rows: list[list[int]] = [[] for _ in range(stepper.start.shape[0])]
    finished = np.zeros(len(rows), dtype=bool)
    tokens = stepper.start
    for _ in range(max_new_tokens):
        chosen = stepper.step(tokens).astype(np.float32).argmax(axis=-1)  # (B,)
        for row, token, done in zip(rows, chosen.tolist(), finished.tolist()):
            if not done:
                row.append(token)
        finished |= np.isin(chosen, stops)
        if finished.all():
            break
        tokens = chosen[:, None]
    return [row[:-1] if row and row[-1] in stops else row for row in rows]


def beam_search(stepper: Stepper, beams: int, steps: int, stops: tuple[int, ...], length_penalty: float = 1.0,
                exact_stop: bool = False) -> list[list[int]]:
    """Beam search with the rules of :func:`zoo.generation.beam_search` (see there), in numpy."""
    sources = stepper.start.shape[0]
    stepper.reorder(np.repeat(np.arange(sources), beams))
    stop_ids = np.array(stops, dtype=np.int64)
    width = (1 + max(1, stop_ids.size)) * beams
    neg = np.float32(-np.inf)
    scores = np.full((sources, beams), neg, dtype=np.float32)
    scores[:, 0] = 0.0
    running = np.zeros((sources, beams, steps), dtype=np.int64)       # tokens of the live beams
    kept = np.full((sources, beams), neg, dtype=np.float32)            # finished scores, best first
    kept_tokens = np.zeros_like(running)
    kept_lengths = np.zeros((sources, beams), dtype=np.int64)
    done = np.zeros(sources, dtype=bool)
    source = np.arange(sources)[:, None]
    tokens = stepper.start
    for length in range(1, steps + 1):
        logprobs = log_softmax(stepper.step(tokens))  # (S*K, V)
        vocab = logprobs.shape[-1]
        candidates = (scores[:, :, None] + logprobs.reshape(sources, beams, vocab)).reshape(sources, -1)
        top_index = _top(candidates, min(width, beams * vocab))  # (S, W)
        top_scores = np.take_along_axis(candidates, top_index, axis=1)
        origin, token = top_index // vocab, top_index % vocab
        stopped = np.isin(token, stop_ids)
        ends = stopped | (length == steps)
        history = running[source, origin]  # (S, W, N)
        history[:, :, length - 1] = token
        rank = np.arange(top_scores.shape[1])[None]
        finishing = ends & (rank < beams) & ~done[:, None] & np.isfinite(top_scores)
        normalised = (top_scores / np.float32(length ** length_penalty)).astype(np.float32)
        pool = np.concatenate([kept, np.where(finishing, normalised, neg)], axis=1)
        best = _top(pool, beams)
        kept = np.take_along_axis(pool, best, axis=1)
        kept_tokens = np.concatenate([kept_tokens, history], axis=1)[source, best]
        kept_lengths = np.take_along_axis(np.concatenate([kept_lengths, length - stopped], axis=1), best, axis=1)
        if length == steps:
            break
        live = np.where(ends, neg, top_scores)
        pick = _top(live, beams)
        scores = np.take_along_axis(live, pick, axis=1)
        running = history[source, pick]
        bound = steps if exact_stop and length_penalty > 0 else length
        done |= np.isfinite(kept).all(axis=-1) & (kept[:, -1] >= scores[:, 0] / np.float32(bound ** length_penalty))
        if done.all():
            break
        scores = np.where(done[:, None], neg, scores)
        stepper.reorder((source * beams + np.take_along_axis(origin, pick, axis=1)).reshape(-1))
        tokens = np.take_along_axis(token, pick, axis=1).reshape(-1, 1)
    return [kept_tokens[s, 0, :kept_lengths[s, 0]].tolist() for s in range(sources)]


def decode(stepper: Stepper, stops: tuple[int, ...], max_new_tokens: int = 32, beams: int = 1,
           length_penalty: float = 1.0, **options: object) -> list[list[int]]:
    """New tokens per row by greedy decoding or (``beams`` > 1) beam search; sampling is refused."""
    check_options(**options)
    if max_new_tokens == 0:
        return [[] for _ in range(stepper.start.shape[0])]
    if beams > 1:
        return beam_search(stepper, beams, max_new_tokens, stops, length_penalty)
    return greedy(stepper, max_new_tokens, stops)
