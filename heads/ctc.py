"""CTC head: a linear layer over the frames of any audio backbone, CTC loss, greedy and prefix
beam-search decoding (both in PyTorch, batched, on any device).

Units: characters by default (``alphabet``, stored in the head's arguments and so in
``config.json``; index 0 is the blank and its character is only a placeholder), or the ids of a
sentencepiece tokenizer stored with the model (``vocab_size`` without ``alphabet``), whose pad id
0 doubles as the blank: it never occurs inside a target.

Batch contract (docs/design.md): ``targets`` (B, L) unit ids without BOS/EOS, right-padded, with
``target_mask`` (B, L); input lengths come from ``Features.mask``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from heads.base import Head, SoftOutputs
from zoo.features import Features
from zoo.registry import HEADS

BLANK = 0
DEFAULT_ALPHABET = "_ 'abcdefghijklmnopqrstuvwxyz"   # "_" = the blank (index 0)


class CTCHead(Head):
    """Dropout -> linear to the unit vocabulary (blank = 0); CTC loss; greedy / prefix beam decoding."""

    accepts = ("audio",)

    def __init__(self, dim: int, vocab_size: int, alphabet: str | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if alphabet is not None and len(alphabet) != vocab_size:
            raise ValueError(f"alphabet of {len(alphabet)} characters for a vocabulary of {vocab_size}")
        if alphabet is not None and len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet {alphabet!r} repeats a character")
        self.alphabet = alphabet
        self.index = {ch: i for i, ch in enumerate(alphabet or "") if i != BLANK}
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, vocab_size)

    # ---- characters ----------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Character ids of ``text`` (needs an alphabet); an unknown character raises naming it."""
        if self.alphabet is None:
            raise ValueError("this CTC head has sentencepiece units: encode with the model's tokenizer")
        try:
            return [self.index[ch] for ch in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} of {text!r} is not in the alphabet "
                             f"{self.alphabet!r}") from None

    def ids_to_text(self, ids: list[int]) -> str:
        """The text of decoded character ids (needs an alphabet)."""
        if self.alphabet is None:
            raise ValueError("this CTC head has sentencepiece units: decode with the model's tokenizer")
        return "".join(self.alphabet[i] for i in ids if i != BLANK)

    # ---- Head contract ---------------------------------------------------------------------
    def forward(self, features: Features, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Frame logits (B, T, V) and the number of real frames per row (B,)."""
        logits = self.proj(self.drop(features.tokens))  # (B, T, V)
        if features.mask is None:
            lengths = torch.full(logits.shape[:1], logits.shape[1], dtype=torch.long, device=logits.device)
        else:
            lengths = features.mask.sum(dim=1)
        return {"logits": logits, "lengths": lengths}

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """CTC loss in fp32, per target unit then averaged over the batch; impossible alignments
        (fewer frames than the target needs) count zero instead of infinity."""
        log_probs = outputs["logits"].float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, V)
        targets, target_mask = batch["targets"], batch["target_mask"]
        loss = F.ctc_loss(log_probs, targets, outputs["lengths"], target_mask.sum(dim=1), blank=BLANK,
                          reduction="mean", zero_infinity=True)
        return {"loss": loss}

    def soft_outputs(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> SoftOutputs:
        """The logits (N, V) of the N real frames."""
        logits, lengths = outputs["logits"], outputs["lengths"]
        real = torch.arange(logits.shape[1], device=logits.device)[None] < lengths[:, None].to(logits.device)
        return SoftOutputs(logits[real])

    def decode(self, outputs: dict[str, torch.Tensor], beams: int = 1, prune: int = 32,
               **options: Any) -> list[list[int]]:
        """Unit ids per row: best path (``beams`` 1) or prefix beam search (``beams`` > 1).

        Other generation options (temperature, top-k...) do not apply to CTC and are ignored.
        """
        log_probs = outputs["logits"].float().log_softmax(dim=-1)  # (B, T, V)
        if beams <= 1:
            return greedy_decode(log_probs, outputs["lengths"])
        return prefix_beam_search(log_probs, outputs["lengths"], beams, prune)


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK) -> list[list[int]]:
    """Best-path decoding of (B, T, V) scores: per-frame argmax, repeats collapsed, blanks removed."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    previous = F.pad(best[:, :-1], (1, 0), value=-1)  # (B, T): the frame before, -1 at the start
    frames = torch.arange(best.shape[1], device=best.device)[None]  # (1, T)
    keep = (best != blank) & (best != previous) & (frames < lengths[:, None].to(best.device))
    return [row[k].tolist() for row, k in zip(best, keep)]


@dataclass
class _Beams:
    """``K`` prefixes per row: log-probability of ending in blank / in a unit, last unit (-1 for the
    empty prefix), the units so far (``history[..., :size]``) and ``prefix_of[b, i, j]``: prefix j
    is a prefix of (or equal to) prefix i. Tensors (B, K[, T+1 | K])."""

    p_b: torch.Tensor
    p_nb: torch.Tensor
    last: torch.Tensor
    history: torch.Tensor
    size: torch.Tensor
    prefix_of: torch.Tensor

    @classmethod
    def empty(cls, rows: int, beams: int, steps: int, dtype: torch.dtype, device: torch.device) -> "_Beams":
        """One live beam per row, the empty prefix; the other slots are dead (-inf)."""
        p_b = torch.full((rows, beams), float("-inf"), dtype=dtype, device=device)
        p_b[:, 0] = 0.0
        zeros = torch.zeros(rows, beams, dtype=torch.long, device=device)
        return cls(p_b, torch.full_like(p_b, float("-inf")), zeros - 1,
                   torch.zeros(rows, beams, steps + 1, dtype=torch.long, device=device), zeros,
                   torch.ones(rows, beams, beams, dtype=torch.bool, device=device))

    def where(self, keep: torch.Tensor, other: "_Beams") -> "_Beams":
        """Rows where ``keep`` (B,) is True from ``self``, the others from ``other``."""
        picked = [torch.where(keep.view(-1, *[1] * (a.dim() - 1)), a, b)
                  for a, b in zip(vars(self).values(), vars(other).values())]
        return _Beams(*picked)


def prefix_beam_search(log_probs: torch.Tensor, lengths: torch.Tensor, beams: int, prune: int = 32,
                       blank: int = BLANK) -> list[list[int]]:
    """CTC prefix beam search over (B, T, V) log-probabilities, every row at once: the most
    probable prefix of each row (see :func:`prefix_beam_scores`)."""
    return [units for units, _ in prefix_beam_scores(log_probs, lengths, beams, prune, blank)]


def prefix_beam_scores(log_probs: torch.Tensor, lengths: torch.Tensor, beams: int, prune: int = 32,
                       blank: int = BLANK) -> list[tuple[list[int], float]]:
    """The most probable prefix of each row and its log-probability (summed over its alignments).

    Each of the ``beams`` prefixes keeps two scores: ending in blank (``p_b``) and ending in its
    last unit (``p_nb``). Per frame every prefix either stays (a blank, or a repeat of its last
    unit) or grows by one of the ``prune`` most probable non-blank units of the frame (every unit
    when the vocabulary is smaller); a repeated unit only grows a prefix that ended in blank.
    Distinct beams hold distinct prefixes, so the only candidates reaching the same prefix are a
    prefix P staying and P's parent (a beam too) growing by P's last unit; these are found
    exactly through ``prefix_of`` and merged (log-sum-exp), then the best ``beams`` per row are
    kept. Computed in the dtype of ``log_probs``.
    """
    rows, steps, vocab = log_probs.shape
    device = log_probs.device
    units = torch.tensor([u for u in range(vocab) if u != blank], device=device)
    state = _Beams.empty(rows, beams, steps, log_probs.dtype, device)
    for t in range(steps):
        grown = _step(state, log_probs[:, t], units[None].expand(rows, -1), min(prune, units.numel()), blank)
        state = grown.where(t < lengths.to(device), state)  # rows past their length keep their beams
    total = torch.logaddexp(state.p_b, state.p_nb)  # (B, K)
    best_score, best = total.max(dim=-1)  # (B,)
    return [(state.history[r, k, :state.size[r, k]].tolist(), score)
            for r, (k, score) in enumerate(zip(best.tolist(), best_score.tolist()))]


def _step(state: _Beams, frame: torch.Tensor, units: torch.Tensor, width: int, blank: int) -> _Beams:
    """The best ``K`` prefixes per row after one frame of log-probabilities (B, V)."""
    rows, beams = state.p_b.shape
    device, neg = frame.device, float("-inf")
    top_lp, top = frame.gather(1, units).topk(width, dim=-1)  # (B, C)
    top_units = units.gather(1, top)
    total = torch.logaddexp(state.p_b, state.p_nb)  # (B, K)
    # candidates 0..K-1: each prefix stays (a blank after anything, or its last unit repeated)
    stay_b = total + frame[:, blank, None]
    stay_nb = state.p_nb + frame.gather(1, state.last.clamp(min=0)).masked_fill(state.last < 0, neg)
    # candidates K..K+K*C-1: prefix k grows by unit c (a repeated unit only after a blank)
    repeat = top_units[:, None, :] == state.last[:, :, None]  # (B, K, C)
    grow_nb = torch.where(repeat, state.p_b[:, :, None], total[:, :, None]) + top_lp[:, None, :]
    # prefix a (alive) equals prefix b grown by unit c when b is a's parent and c is a's last unit
    parent_of = state.prefix_of & (state.size[:, :, None] == state.size[:, None, :] + 1)  # (B, K a, K b)
    parent_of &= torch.isfinite(total)[:, :, None]
    same = parent_of[:, :, :, None] & (top_units[:, None, None, :] == state.last[:, :, None, None])  # (B, a, b, C)
    into = torch.where(same, grow_nb[:, None], neg).flatten(2).logsumexp(dim=-1)  # (B, a): mass reaching a
    stay_nb = torch.logaddexp(stay_nb, into)
    grow_nb = grow_nb.masked_fill(same.any(dim=1), neg)  # merged into the stay candidate
    cand_b = torch.cat([stay_b, torch.full_like(grow_nb, neg).flatten(1)], dim=1)  # (B, N)
    cand_nb = torch.cat([stay_nb, grow_nb.flatten(1)], dim=1)
    slots = torch.arange(beams, device=device)
    cand_parent = torch.cat([slots, slots.repeat_interleave(width)])[None].expand(rows, -1)  # (B, N)
    cand_unit = torch.cat([torch.full_like(state.last, -1), top_units.repeat(1, beams)], dim=1)  # (B, N)
    cand = torch.logaddexp(cand_b, cand_nb).topk(beams, dim=-1).indices  # (B, K)
    parent, unit = cand_parent.gather(1, cand), cand_unit.gather(1, cand)
    grew = unit >= 0
    history = state.history.gather(1, parent[:, :, None].expand(-1, -1, state.history.shape[2]))
    size = state.size.gather(1, parent)
    # new prefix j is a prefix of new prefix i: j's parent is a prefix of i's parent and, when j
    # grew, i's parent is longer than j's and holds j's new unit at that place
    inherited = state.prefix_of.gather(1, parent[:, :, None].expand(-1, -1, beams))
    inherited = inherited.gather(2, parent[:, None, :].expand(-1, beams, -1))  # (B, i, j)
    unit_at = history.gather(2, size[:, None, :].expand(-1, beams, -1))  # (B, i, j): i's parent at j's size
    extends = (size[:, :, None] > size[:, None, :]) & (unit_at == unit[:, None, :])
    prefix_of = inherited & (~grew[:, None, :] | extends) | torch.eye(beams, dtype=torch.bool, device=device)
    history = history.scatter(2, size[:, :, None], torch.where(grew, unit, 0)[:, :, None])
    return _Beams(p_b=cand_b.gather(1, cand), p_nb=cand_nb.gather(1, cand),
                  last=torch.where(grew, unit, state.last.gather(1, parent)),
                  history=history, size=size + grew.long(), prefix_of=prefix_of)


@HEADS.register("ctc", accepts=("audio",))
def ctc(backbone: nn.Module, alphabet: str | None = DEFAULT_ALPHABET, vocab_size: int | None = None,
        dropout: float = 0.0) -> CTCHead:
    """CTC over characters (``alphabet``, index 0 = blank) or, with ``alphabet=None``, over
    ``vocab_size`` sentencepiece ids of the model's tokenizer (pad id 0 = blank)."""
    if alphabet is None and vocab_size is None:
        raise ValueError("the ctc head needs an alphabet (character units) or a vocab_size (sentencepiece units)")
    if alphabet is not None and vocab_size not in (None, len(alphabet)):
        raise ValueError(f"vocab_size {vocab_size} disagrees with the {len(alphabet)} characters of the alphabet; "
                         f"pass alphabet=None for sentencepiece units")
    head = CTCHead(backbone.dim, len(alphabet) if alphabet is not None else vocab_size, alphabet, dropout)
    head.check_backbone(backbone)
    return head
