"""Joint CTC/attention decoding of a model with a ``ctc`` and a ``seq2seq`` head on one encoder.

Beam search over the attention decoder ranks each candidate token ``c`` of a prefix ``g`` by
``(1 - w) * log p_att(c | g) + w * (log p_ctc(g + c...) - log p_ctc(g...))`` (ESPnet's joint
decoding, Watanabe et al. 2017), where ``p_ctc(g...)`` is the CTC probability that the transcript
starts with ``g`` (:mod:`heads.ctc_prefix_score`) and, for the end token, that it is ``g``. Only the
decoder's ``pre_beam`` best tokens (and the end token) are scored by CTC; the rest are dropped.
Both heads share one unit vocabulary whose id 0 is CTC's blank (the tokenizer's pad id).
"""
from __future__ import annotations

from typing import Any

import torch

from heads.ctc import BLANK
from heads.ctc_prefix_score import CTCPrefixScorer, PrefixState
from zoo.errors import ZooError
from zoo.generation import beam_search, generation_config

NEG_INF = float("-inf")


class CTCRescorer:
    """A :class:`zoo.generation.BeamScorer` that mixes CTC prefix scores into the decoder's log-probabilities."""

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, eos: int, weight: float,
                 pre_beam: int) -> None:
        self.prefix = CTCPrefixScorer(log_probs, lengths, eos=eos, blank=BLANK)
        self.eos, self.weight, self.pre_beam = eos, weight, pre_beam
        self.state: PrefixState | None = None
        self._last: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    def start(self, rows: torch.Tensor) -> None:
        self.state = self.prefix.initial(rows)

    def rescore(self, logprobs: torch.Tensor) -> torch.Tensor:
        """(S*K, V) joint scores: the decoder's ``pre_beam`` best tokens and the end token, -inf elsewhere."""
        assert self.state is not None, "start() comes first"
        best = logprobs.topk(min(self.pre_beam, logprobs.shape[1]), dim=1).indices              # (N, P)
        candidates = torch.cat([best, torch.full_like(best[:, :1], self.eos)], dim=1)            # (N, P + 1)
        extended = self.prefix.extend(self.state, candidates)
        gain = extended[0] - self.state.score[:, None]                                            # (N, P + 1)
        gain = torch.where(torch.isnan(gain), NEG_INF, gain)       # -inf - -inf: a prefix CTC rules out
        ctc = self.weight * gain if self.weight > 0 else torch.zeros_like(gain)   # weight 0: attention alone
        joint = (1 - self.weight) * logprobs.gather(1, candidates) + ctc
        self._last = candidates, extended
        return torch.full_like(logprobs, NEG_INF).scatter(1, candidates, joint)

    def advance(self, rows: torch.Tensor, tokens: torch.Tensor) -> None:
        assert self.state is not None and self._last is not None, "rescore() comes before advance()"
        candidates, extended = self._last
        choice = (candidates[rows] == tokens[:, None]).int().argmax(dim=1)   # (S*K,) its column among the candidates
        self.state = self.prefix.select(self.state, candidates, extended, rows, choice)


def joint_generate(model: Any, batch: dict[str, Any], ctc_weight: float, ctc: str = "ctc",
                   decoder: str = "seq2seq", pre_beam: int | None = None, **options: Any) -> list[list[int]]:
    """Unit ids per row by beam search over head ``decoder`` rescored with head ``ctc``'s prefix scores,
    ``ctc_weight`` in [0, 1] (0: attention alone; 1: CTC alone among the decoder's candidates). ``options``
    are generation options (``beams``, ``max_new_tokens``, ``length_penalty``...); ``pre_beam`` defaults
    to 1.5 x beams (at least 4). The encoder runs once for CTC and once more inside the decoder's start.
    """
    if not 0.0 <= ctc_weight <= 1.0:
        raise ZooError(f"--decode-ctc-weight {ctc_weight}: give a weight in [0, 1]")
    cfg = generation_config(model, dict(options))
    if len(cfg.stop_tokens) != 1:
        raise ZooError("joint decoding needs one end token: store the tokenizer with the model (its EOS) or pass "
                       f"stop_tokens=(ID,), not {cfg.stop_tokens}")
    with torch.no_grad():
        features = model.backbone(batch["inputs"], batch.get("mask"))
        frames = model.part(ctc)(features, batch)
        scorer = CTCRescorer(frames["logits"].float().log_softmax(dim=-1), frames["lengths"], cfg.stop_tokens[0],
                             ctc_weight, pre_beam or max(4, int(1.5 * cfg.beams)))
        return beam_search(model.single_head(decoder), batch, cfg, scorer=scorer)
