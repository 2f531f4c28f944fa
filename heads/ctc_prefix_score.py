"""CTC prefix scores for joint CTC/attention decoding (Watanabe et al., 2017, "Hybrid CTC/attention").

An attention decoder proposes the next token of each hypothesis; the CTC head's frame posteriors
say how likely it is that the transcript *starts with* the extended prefix (summed over every
alignment and every continuation). Beam search adds ``weight * (score(prefix + c) - score(prefix))``
to the decoder's log-probability of ``c``. For the end token the score is the probability that
the transcript *is* the prefix.

Per hypothesis the state keeps, for every frame ``t``, the log-probabilities that the prefix's
alignment ends at ``t`` on a label (``n``) or on a blank (``b``). One extension costs a recursion over
the frames, batched over hypotheses and candidate tokens. Utterances of different lengths are
padded with frames that are blank with probability 1: that leaves every sequence's probability
unchanged, so no frame mask is needed inside the recursion.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


@dataclass
class PrefixState:
    """The CTC side of N hypotheses."""

    rows: torch.Tensor      # (N,) the utterance (batch row) of each hypothesis
    label: torch.Tensor     # (N, T) log P(prefix, alignment ends on a label at frame t)
    blank: torch.Tensor     # (N, T) log P(prefix, alignment ends on a blank at frame t)
    score: torch.Tensor     # (N,) log P(transcript starts with the prefix)
    last: torch.Tensor      # (N,) the prefix's last token, -1 for the empty prefix


class CTCPrefixScorer:
    """Prefix scores of one batch of CTC frame log-probabilities ``log_probs`` (B, T, V), ``lengths`` (B,)."""

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, eos: int, blank: int = 0) -> None:
        steps = log_probs.shape[1]
        padded = torch.arange(steps, device=log_probs.device)[None, :] >= lengths.to(log_probs.device)[:, None]  # (B, T)
        certain_blank = torch.full_like(log_probs[0, 0], NEG_INF)
        certain_blank[blank] = 0.0
        self.log_probs = torch.where(padded[..., None], certain_blank, log_probs.float())  # (B, T, V)
        self.eos, self.blank = eos, blank

    def initial(self, rows: torch.Tensor) -> PrefixState:
        """The empty prefix for hypotheses of the utterances ``rows`` (N,)."""
        blanks = self.log_probs[rows, :, self.blank].cumsum(dim=1)  # (N, T): every frame so far a blank
        return PrefixState(rows, torch.full_like(blanks, NEG_INF), blanks, torch.zeros_like(blanks[:, 0]),
                           torch.full_like(rows, -1))

    def extend(self, state: PrefixState, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores of every hypothesis extended by each of its ``candidates`` (N, K) token ids.

        Returns ``(score (N, K) log P(transcript starts with prefix + c); for c = eos, log P(transcript =
        prefix); the blank scores -inf), label (N, K, T), blank (N, K, T))``, the last two for :meth:`select`.
        """
        frames = self.log_probs[state.rows]                                   # (N, T, V)
        emit = frames.gather(2, candidates[:, None, :].expand(-1, frames.shape[1], -1)).transpose(1, 2)  # (N, K, T)
        stay_blank = frames[:, :, self.blank][:, None, :]                      # (N, 1, T)
        total = torch.logaddexp(state.label, state.blank)                      # (N, T)
        # phi: the prefix's mass a new label c may follow; a repeat of its last label needs a blank between
        phi = torch.where((candidates == state.last[:, None])[..., None], state.blank[:, None, :], total[:, None, :])
        empty = (state.last < 0)[:, None]                                      # (N, 1)
        label = torch.empty_like(emit)
        blank = torch.empty_like(emit)
        label[..., 0] = torch.where(empty, emit[..., 0], NEG_INF)
        blank[..., 0] = NEG_INF
        for t in range(1, emit.shape[2]):
            label[..., t] = torch.logaddexp(label[..., t - 1], phi[..., t - 1]) + emit[..., t]
            blank[..., t] = torch.logaddexp(blank[..., t - 1], label[..., t - 1]) + stay_blank[..., t]
        starts = torch.logsumexp(phi[..., :-1] + emit[..., 1:], dim=2) if emit.shape[2] > 1 else label[..., 0]
        score = torch.logaddexp(label[..., 0], starts) if emit.shape[2] > 1 else starts   # (N, K)
        score = torch.where(candidates == self.eos, total[:, -1:].expand_as(score), score)
        score = torch.where(candidates == self.blank, NEG_INF, score)
        return score, label, blank

    def select(self, state: PrefixState, candidates: torch.Tensor, scores: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
               parent: torch.Tensor, choice: torch.Tensor) -> PrefixState:
        """The state of the kept extensions: hypothesis ``parent`` (M,) extended by its candidate ``choice`` (M,)."""
        score, label, blank = scores
        return PrefixState(state.rows[parent], label[parent, choice], blank[parent, choice], score[parent, choice],
                           candidates[parent, choice])
