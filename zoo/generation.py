"""Generation over the step protocol: greedy, sampling (temperature, top-k, top-p), beam search, streaming.

A generating head implements ``init_state(model, batch, use_cache) -> state`` whose
``state.start`` (B, T0) holds the tokens fed first (the prompt, or BOS), and
``step(model, tokens (B, T), state) -> (logits (B, V) of the last position, state)``;
``state.reorder(index)`` selects rows (beam search expands and reorders with it).
The same loop therefore serves language models, translation and attention-based ASR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch


@dataclass(frozen=True)
class GenerationConfig:
    """Options shared by every generating task."""

    max_new_tokens: int = 32
    temperature: float = 0.0          # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    beams: int = 1
    length_penalty: float = 1.0
    stop_tokens: tuple[int, ...] = ()
    seed: int | None = None
    use_cache: bool = True
    static_cache: bool = False


def _config(model: Any, options: dict[str, Any]) -> GenerationConfig:
    stops = options.pop("stop_tokens", None)
    if stops is None:
        tokenizer = getattr(model, "tokenizer", None)
        stops = (tokenizer.eos_id,) if tokenizer is not None else ()
    return GenerationConfig(stop_tokens=tuple(stops), **options)


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Scale by temperature, then keep the top-k and the smallest nucleus of mass top-p: (B, V)."""
    logits = logits / max(temperature, 1e-6)
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already >= p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def stream(model: Any, batch: dict[str, Any], **options: Any) -> Iterator[list[int | None]]:
    """Yield, per step, each row's new token (None once the row has stopped). Greedy or sampling."""
    cfg = _config(model, dict(options))
    if cfg.beams > 1:
        raise ValueError("streaming supports greedy and sampling, not beam search")
    head = model.head
    state = head.init_state(model, batch, use_cache=cfg.use_cache, static_cache=cfg.static_cache,
                            max_new_tokens=cfg.max_new_tokens)
    generator = None
    if cfg.temperature > 0 and cfg.seed is not None:
        generator = torch.Generator(device=state.start.device).manual_seed(cfg.seed)
    stops = torch.tensor(cfg.stop_tokens or (-1,), device=state.start.device)
    finished = torch.zeros(state.start.shape[0], dtype=torch.bool, device=state.start.device)
    tokens = state.start
    for _ in range(cfg.max_new_tokens):
        logits, state = head.step(model, tokens, state)
        logits = logits.float()
        if cfg.temperature > 0:
            probs = filter_logits(logits, cfg.temperature, cfg.top_k, cfg.top_p).softmax(dim=-1)
            chosen = torch.multinomial(probs, 1, generator=generator)[:, 0]
        else:
            chosen = logits.argmax(dim=-1)
        yield [None if done else int(t) for t, done in zip(chosen.tolist(), finished.tolist())]
        finished |= torch.isin(chosen, stops)
        if bool(finished.all()):
            return
        tokens = chosen[:, None]


def generate(model: Any, batch: dict[str, Any], **options: Any) -> list[list[int]]:
    """New token ids per row, stop token excluded. ``beams > 1`` runs beam search."""
    cfg = _config(model, dict(options))
    if cfg.beams > 1:
        return beam_search(model, batch, cfg)
    rows: list[list[int]] | None = None
    for step_tokens in stream(model, batch, **options):
        rows = rows or [[] for _ in step_tokens]
        for row, token in zip(rows, step_tokens):
            if token is not None:
                row.append(token)
    stops = set(cfg.stop_tokens)
    return [row[:-1] if row and row[-1] in stops else row for row in rows or []]


def beam_search(model: Any, batch: dict[str, Any], cfg: GenerationConfig) -> list[list[int]]:
    """Beam search with length penalty (score / length ** penalty).

    A source is done once it holds ``beams`` finished hypotheses and none of its live beams
    scores better, at the current length, than its best finished one. (Stopping at ``beams``
    finished alone would let unlikely early EOS candidates end the search while the likely
    hypothesis is still growing.) With one beam this is exactly greedy: a finished hypothesis
    is only taken when EOS is the top candidate."""
    head, beams = model.head, cfg.beams
    state = head.init_state(model, batch, use_cache=cfg.use_cache, static_cache=cfg.static_cache,
                            max_new_tokens=cfg.max_new_tokens)
    sources = state.start.shape[0]
    device = state.start.device
    state.reorder(torch.arange(sources, device=device).repeat_interleave(beams))
    tokens = state.start
    scores = torch.full((sources, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand
    histories: list[list[int]] = [[] for _ in range(sources * beams)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(sources)]
    done = [False] * sources
    stops = set(cfg.stop_tokens)
    for length in range(1, cfg.max_new_tokens + 1):
        logits, state = head.step(model, tokens, state)
        logprobs = logits.float().log_softmax(dim=-1)  # (S*K, V)
        vocab = logprobs.shape[-1]
        candidates = (scores.view(-1, 1) + logprobs).view(sources, beams * vocab)
        top_scores, top_index = candidates.topk(2 * beams, dim=-1)  # (S, 2K)
        next_scores = torch.full_like(scores, float("-inf"))
        origin = torch.zeros(sources, beams, dtype=torch.long, device=device)
        next_tokens = torch.zeros(sources, beams, dtype=torch.long, device=device)
        for s in range(sources):
            alive = 0
            for score, index in zip(top_scores[s].tolist(), top_index[s].tolist()):
                if done[s] or alive == beams or score == float("-inf"):
                    break
                beam, token = divmod(index, vocab)
                history = histories[s * beams + beam]
                if token in stops:
                    finished[s].append((score / length ** cfg.length_penalty, history))
                    continue
                next_scores[s, alive], origin[s, alive], next_tokens[s, alive] = score, beam, token
                alive += 1
            if len(finished[s]) >= beams and not done[s]:
                best_alive = next_scores[s, 0].item() / length ** cfg.length_penalty
                done[s] = max(score for score, _ in finished[s]) >= best_alive
            if done[s]:
                next_scores[s] = float("-inf")
        rows = (torch.arange(sources, device=device)[:, None] * beams + origin).view(-1)
        histories = [histories[r] + [t] for r, t in zip(rows.tolist(), next_tokens.view(-1).tolist())]
        scores = next_scores
        if all(done):
            break
        state.reorder(rows)
        tokens = next_tokens.view(-1, 1)
    results = []
    for s in range(sources):
        pool = list(finished[s])
        if not done[s]:  # ran out of steps: unfinished beams compete at full length
            pool += [(scores[s, k].item() / len(histories[s * beams + k]) ** cfg.length_penalty,
                      histories[s * beams + k]) for k in range(beams) if scores[s, k] > float("-inf")]
        results.append(max(pool, key=lambda item: item[0])[1])
    return results
