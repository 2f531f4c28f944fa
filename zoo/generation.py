"""Generation over the step protocol: greedy, sampling (temperature, top-k, top-p), beam search, streaming;
n-gram blocking (``no_repeat_ngram_size``) in all of them.

A generating head implements ``init_state(model, batch, use_cache) -> state`` whose
``state.start`` (B, T0) holds the tokens fed first (the prompt, or BOS), and
``step(model, tokens (B, T), state) -> (logits (B, V) of the last position, state)``;
``state.reorder(index)`` selects rows (beam search expands and reorders with it).
The same loop therefore serves language models, translation and attention-based ASR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import torch

from zoo.errors import ZooError


@dataclass(frozen=True)
class GenerationConfig:
    """Options shared by every generating task.

    ``exact_stop`` (beam search): keep a source open while a live beam could still beat its
    worst kept hypothesis at any length up to ``max_new_tokens`` (transformers'
    ``early_stopping="never"``); by default the live beams are judged at their current length
    (transformers' ``early_stopping=False``).

    ``no_repeat_ngram_size`` N > 0: a token that would repeat an N-gram of the row's tokens gets
    -inf (:func:`ban_repeated_ngrams`). As in transformers, the tokens are the ones fed first
    (``state.start``: a language model's prompt, a decoder's BOS) and the generated ones, so a
    language model does not repeat N-grams of its prompt either.
    """

    max_new_tokens: int = 32
    temperature: float = 0.0          # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    beams: int = 1
    length_penalty: float = 1.0
    stop_tokens: tuple[int, ...] = ()
    seed: int | None = None
    use_cache: bool = True
    static_cache: bool = True         # preallocated KV cache written in place; False grows it by cat
    exact_stop: bool = False
    no_repeat_ngram_size: int = 0     # 0: off
    sync_every: int = 8               # generate(): check on the host every k tokens whether all rows stopped

    def __post_init__(self) -> None:
        checks = [("max_new_tokens", self.max_new_tokens >= 0, "0 or more"),
                  ("sync_every", self.sync_every >= 1, "1 or more"),
                  ("temperature", self.temperature >= 0, "0 (greedy) or more"),
                  ("top_k", self.top_k >= 0, "0 (off) or more"),
                  ("top_p", 0.0 <= self.top_p <= 1.0, "between 0 and 1"),
                  ("beams", self.beams >= 1, "1 or more"),
                  ("no_repeat_ngram_size", self.no_repeat_ngram_size >= 0, "0 (off) or more")]
        for name, ok, allowed in checks:
            if not ok:
                raise ZooError(f"generation option {name}={getattr(self, name)!r} is out of range; pass {allowed}")


_TRANSFORMERS_NAMES = {"num_beams": "beams"}


def transformers_options(options: dict[str, Any]) -> dict[str, Any]:
    """Generation options with transformers' names mapped to ours: ``num_beams`` -> ``beams`` (the others,
    ``max_new_tokens``, ``length_penalty``, ``no_repeat_ngram_size``..., are the same in both);
    ``do_sample=False`` is greedy (temperature 0, as transformers ignores it), ``do_sample=True``
    samples at ``temperature`` (1.0 when not given, transformers' default)."""
    mapped = {_TRANSFORMERS_NAMES.get(name, name): value for name, value in options.items()}
    if "num_beams" in options and "beams" in options:
        raise ZooError("give beams or num_beams, not both")
    do_sample = mapped.pop("do_sample", None)
    if do_sample is False:
        mapped["temperature"] = 0.0
    elif do_sample:
        mapped["temperature"] = mapped.get("temperature") or 1.0
    return mapped


def generation_config(model: Any, options: dict[str, Any]) -> GenerationConfig:
    """The options as a GenerationConfig; the stop tokens default to the model tokenizer's EOS."""
    stops = options.pop("stop_tokens", None)
    if stops is None:
        tokenizer = getattr(model, "tokenizer", None)
        stops = (tokenizer.eos_id,) if tokenizer is not None else ()
    return GenerationConfig(stop_tokens=tuple(stops), **options)


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Scale by temperature, then keep the top-k and the smallest nucleus of mass top-p: (B, V).

    The most likely token always stays (``top_p`` 0 keeps only it); ``top_k`` beyond the
    vocabulary keeps every token."""
    logits = logits / max(temperature, 1e-6)
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # mass before this token already >= p
        drop[:, 0] = False
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def ban_repeated_ngrams(scores: torch.Tensor, history: torch.Tensor, size: int) -> torch.Tensor:
    """``scores`` (R, V) with -inf on every token that would complete an n-gram of ``size`` tokens
    already in its row of ``history`` (R, T), the tokens so far: those following an earlier
    occurrence of the row's last ``size - 1`` tokens (transformers' ``NoRepeatNGramLogitsProcessor``).
    ``size`` 0 changes nothing."""
    if size == 0 or history.shape[1] < size:
        return scores
    grams = history.unfold(1, size, 1)  # (R, T - size + 1, size): every n-gram so far
    tail = history[:, history.shape[1] - size + 1:]  # (R, size - 1): what the next token would extend
    repeats = (grams[:, :, :-1] == tail[:, None, :]).all(dim=-1)  # (R, T - size + 1)
    hits = torch.zeros_like(scores).scatter_add_(1, grams[:, :, -1], repeats.to(scores.dtype))  # (R, V)
    return scores.masked_fill(hits > 0, float("-inf"))


def stream(model: Any, batch: dict[str, Any], **options: Any) -> Iterator[list[int | None]]:
    """Yield, per step, each row's new token (None once the row has stopped). Greedy or sampling."""
    cfg = generation_config(model, dict(options))
    if cfg.beams > 1:
        raise ValueError("streaming supports greedy and sampling, not beam search")
    for chosen, finished in _steps(model, batch, cfg, sync_every=1):
        yield [None if done else int(t) for t, done in zip(chosen.tolist(), finished.tolist())]


def _steps(model: Any, batch: dict[str, Any], cfg: GenerationConfig,
           sync_every: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield per step the chosen tokens (B,) and which rows had stopped before it (B,), both on
    the device; the host reads ``finished.all()`` only every ``sync_every`` steps, so up to
    ``sync_every - 1`` steps run after every row stopped (their tokens are all marked stopped)."""
    head = model.head
    state = head.init_state(model, batch, use_cache=cfg.use_cache, static_cache=cfg.static_cache,
                            max_new_tokens=cfg.max_new_tokens)
    generator = None
    if cfg.temperature > 0 and cfg.seed is not None:
        generator = torch.Generator(device=state.start.device).manual_seed(cfg.seed)
    stops = torch.tensor(cfg.stop_tokens or (-1,), device=state.start.device)
    finished = torch.zeros(state.start.shape[0], dtype=torch.bool, device=state.start.device)
    tokens = history = state.start  # history (B, T0 + step - 1): what n-gram blocking looks at
    for step in range(1, cfg.max_new_tokens + 1):
        logits, state = head.step(model, tokens, state)
        logits = ban_repeated_ngrams(logits.float(), history, cfg.no_repeat_ngram_size)
        if cfg.temperature > 0:
            probs = filter_logits(logits, cfg.temperature, cfg.top_k, cfg.top_p).softmax(dim=-1)
            chosen = torch.multinomial(probs, 1, generator=generator)[:, 0]
        else:
            chosen = logits.argmax(dim=-1)
        yield chosen, finished.clone()
        finished |= torch.isin(chosen, stops)
        if step % sync_every == 0 and bool(finished.all()):
            return
        tokens = chosen[:, None]
        if cfg.no_repeat_ngram_size:
            history = torch.cat([history, tokens], dim=1)


def generate(model: Any, batch: dict[str, Any], **options: Any) -> list[list[int]]:
    """New token ids per row, stop token excluded. ``beams > 1`` runs beam search."""
    cfg = generation_config(model, dict(options))
    if cfg.max_new_tokens == 0:
        state = model.head.init_state(model, batch, use_cache=False, static_cache=False, max_new_tokens=0)
        return [[] for _ in range(state.start.shape[0])]
    if cfg.beams > 1:
        return beam_search(model, batch, cfg)
    chosen, stopped = zip(*_steps(model, batch, cfg, sync_every=cfg.sync_every))
    tokens, live = torch.stack(chosen, dim=1).tolist(), (~torch.stack(stopped, dim=1)).tolist()  # (B, N) each
    rows = [[token for token, keep in zip(row, keeps) if keep] for row, keeps in zip(tokens, live)]
    stops = set(cfg.stop_tokens)
    return [row[:-1] if row and row[-1] in stops else row for row in rows]


class BeamScorer(Protocol):
    """A second opinion on beam search's candidates (e.g. CTC prefix scores in joint CTC/attention decoding)."""

    def start(self, rows: torch.Tensor) -> None:
        """The live beams begin: beam ``i`` decodes source ``rows[i]`` (S*K,)."""

    def rescore(self, logprobs: torch.Tensor) -> torch.Tensor:
        """The scores (S*K, V) beam search ranks by, from the decoder's next-token ``logprobs`` (S*K, V)."""

    def advance(self, rows: torch.Tensor, tokens: torch.Tensor) -> None:
        """The next live beams: beam ``rows[i]`` (S*K,) of the last step extended by ``tokens[i]``."""


def beam_search(model: Any, batch: dict[str, Any], cfg: GenerationConfig,
                scorer: BeamScorer | None = None) -> list[list[int]]:
    """Beam search with length penalty (log-probability / generated length ** penalty), the
    rules of transformers' ``generate(num_beams=K, early_stopping=False)``.

    Per step the best ``(1 + max(1, stops)) * K`` continuations of a source's K beams are taken;
    those among the first K that end (a stop token, or the last step) are finished hypotheses,
    scored with their length counting the stop token, and the source keeps its K best finished
    ones; the best K that do not end are the next beams. A source is done once it holds K
    finished and the worst of them scores at least its best live beam, normalised at the
    current length (at ``max_new_tokens`` instead with ``exact_stop`` and a positive penalty:
    an exact bound, since a live score only falls). Returns each source's best finished
    hypothesis, stop token excluded. A ``scorer`` replaces the decoder's log-probabilities by its own
    per-step scores (it follows the beams through ``start`` and ``advance``); n-gram blocking
    then bans on those scores, as transformers bans on the log-probabilities.
    """
    head, beams, steps = model.head, cfg.beams, cfg.max_new_tokens
    state = head.init_state(model, batch, use_cache=cfg.use_cache, static_cache=cfg.static_cache,
                            max_new_tokens=steps)
    sources = state.start.shape[0]
    device = state.start.device
    prompt = state.start.repeat_interleave(beams, dim=0)  # (S*K, T0): every beam of a source starts alike
    state.reorder(torch.arange(sources, device=device).repeat_interleave(beams))
    if scorer is not None:
        scorer.start(torch.arange(sources, device=device).repeat_interleave(beams))
    stops = torch.tensor(cfg.stop_tokens, dtype=torch.long, device=device)
    width = (1 + max(1, stops.numel())) * beams
    neg = float("-inf")
    scores = torch.full((sources, beams), neg, device=device)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand
    running = torch.zeros(sources, beams, steps, dtype=torch.long, device=device)  # tokens of the live beams
    kept = torch.full((sources, beams), neg, device=device)  # finished scores, best first
    kept_tokens = torch.zeros_like(running)
    kept_lengths = torch.zeros(sources, beams, dtype=torch.long, device=device)
    done = torch.zeros(sources, dtype=torch.bool, device=device)
    tokens = state.start
    for length in range(1, steps + 1):
        logits, state = head.step(model, tokens, state)
        logprobs = logits.float().log_softmax(dim=-1)  # (S*K, V)
        if scorer is not None:
            logprobs = scorer.rescore(logprobs)
        if cfg.no_repeat_ngram_size:   # on the log-probabilities, not renormalised: transformers' order
            seen = torch.cat([prompt, running[:, :, :length - 1].reshape(sources * beams, -1)], dim=1)  # (S*K, T)
            logprobs = ban_repeated_ngrams(logprobs, seen, cfg.no_repeat_ngram_size)
        vocab = logprobs.shape[-1]
        candidates = (scores[:, :, None] + logprobs.view(sources, beams, vocab)).view(sources, beams * vocab)
        top_scores, top_index = candidates.topk(min(width, beams * vocab), dim=-1)  # (S, W), best first
        origin, token = top_index // vocab, top_index % vocab
        stopped = torch.isin(token, stops)
        ends = stopped | (length == steps)
        history = running.gather(1, origin[:, :, None].expand(-1, -1, steps))  # (S, W, N)
        history[:, :, length - 1] = token
        rank = torch.arange(top_scores.shape[1], device=device)
        finishing = ends & (rank < beams) & ~done[:, None] & torch.isfinite(top_scores)
        pool = torch.cat([kept, (top_scores / length ** cfg.length_penalty).masked_fill(~finishing, neg)], dim=1)
        best = pool.topk(beams, dim=-1).indices  # (S, K)
        kept = pool.gather(1, best)
        kept_tokens = torch.cat([kept_tokens, history], dim=1).gather(1, best[:, :, None].expand(-1, -1, steps))
        kept_lengths = torch.cat([kept_lengths, length - stopped.long()], dim=1).gather(1, best)
        if length == steps:
            break
        scores, pick = top_scores.masked_fill(ends, neg).topk(beams, dim=-1)  # (S, K) the live beams
        running = history.gather(1, pick[:, :, None].expand(-1, -1, steps))
        bound = steps if cfg.exact_stop and cfg.length_penalty > 0 else length
        done |= torch.isfinite(kept).all(dim=-1) & (kept[:, -1] >= scores[:, 0] / bound ** cfg.length_penalty)
        if bool(done.all()):
            break
        scores = scores.masked_fill(done[:, None], neg)
        rows = (torch.arange(sources, device=device)[:, None] * beams + origin.gather(1, pick)).view(-1)  # (S*K,)
        state.reorder(rows)
        tokens = token.gather(1, pick).view(-1, 1)
        if scorer is not None:
            scorer.advance(rows, tokens[:, 0])
    return [kept_tokens[s, 0, :kept_lengths[s, 0]].tolist() for s in range(sources)]
