"""Joint CTC/attention decoding: weight 0 is attention beam search, and an exhaustive beam finds the
hypothesis that brute force scores best by (1 - w) * attention + w * CTC."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import zoo
from heads.ctc_prefix_score import CTCPrefixScorer
from heads.joint_decoding import CTCRescorer, joint_generate
from tests.backbone_configs import SMALL_ARGS
from tests.test_ctc_prefix_score import brute_force
from zoo.errors import ZooError
from zoo.generation import beam_search, generation_config
from zoo.tokenizer import Tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 6                      # 0 blank/pad, 1 unk, 2 bos, 3 eos, 4 and 5 units
EOS = Tokenizer.eos_id


def hybrid() -> zoo.ZooModel:
    torch.manual_seed(0)
    return zoo.create_model("speech_encoder_tiny", backbone_args=SMALL_ARGS["audio"],
                            heads={"ctc": {"name": "ctc", "args": {"alphabet": None, "vocab_size": VOCAB}},
                                   "seq2seq": {"name": "seq2seq", "args": {"vocab_size": VOCAB, "dim": 32, "depth": 1,
                                                                           "heads": 2}}}).eval()


def audio(seed: int) -> dict:
    torch.manual_seed(seed)
    return {"inputs": torch.randn(1, 6000), "mask": torch.ones(1, 6000, dtype=torch.bool)}


def attention_logprob(model: zoo.ZooModel, batch: dict, tokens: tuple[int, ...]) -> float:
    """log p_att(tokens) from BOS, no cache."""
    view = model.single_head("seq2seq")
    state = view.head.init_state(view, batch, use_cache=False)
    fed, total = state.start, 0.0
    for token in tokens:
        logits, state = view.head.step(view, fed, state)
        total += float(logits.float().log_softmax(dim=-1)[0, token])
        fed = torch.tensor([[token]])
    return total


def test_each_step_adds_the_weighted_gain_in_ctc_prefix_probability() -> None:
    generator = torch.Generator().manual_seed(5)
    frames = torch.randn(1, 5, 4, generator=generator).log_softmax(-1)          # (B, T, V): blank 0, units 1-2, eos 3
    decoder = torch.randn(2, 1, 4, generator=generator).log_softmax(-1)          # two steps of (N, V)
    scorer = CTCRescorer(frames, torch.tensor([5]), eos=3, weight=0.4, pre_beam=4)
    scorer.start(torch.tensor([0]))
    for prefix, logprobs in (((), decoder[0]), ((2,), decoder[1])):
        if prefix:
            scorer.advance(torch.tensor([0]), torch.tensor(prefix[-1:]))
        joint = scorer.rescore(logprobs)[0]
        before = brute_force(frames[0], prefix, whole=False) if prefix else 0.0
        for token in (1, 2):
            gain = brute_force(frames[0], prefix + (token,), whole=False) - before
            assert joint[token].item() == pytest.approx(0.6 * logprobs[0, token].item() + 0.4 * gain, abs=1e-5)
        end = brute_force(frames[0], prefix, whole=True) - before
        assert joint[3].item() == pytest.approx(0.6 * logprobs[0, 3].item() + 0.4 * end, abs=1e-5)
        assert joint[0].item() == float("-inf")                                   # CTC's blank is no token


@pytest.mark.parametrize("seed", [0, 1])
def test_weight_zero_is_attention_beam_search(seed: int) -> None:
    model, batch = hybrid(), audio(seed)
    options = dict(beams=3, max_new_tokens=5, stop_tokens=(EOS,))
    with torch.no_grad():
        alone = beam_search(model.single_head("seq2seq"), batch, generation_config(model, dict(options)))
    assert joint_generate(model, batch, 0.0, pre_beam=VOCAB, **options) == alone


@pytest.mark.parametrize("weight", [0.3, 1.0])
def test_an_exhaustive_beam_finds_the_brute_force_best_joint_score(weight: float) -> None:
    model, batch = hybrid(), audio(3)
    with torch.no_grad():
        frames = model.part("ctc")(model.backbone(batch["inputs"], batch["mask"]), batch)
        scorer = CTCPrefixScorer(frames["logits"].log_softmax(-1), frames["lengths"], eos=EOS)
        units = [token for token in range(VOCAB) if token != 0]

        def ctc_logprob(prefix: tuple[int, ...], whole: bool) -> float:
            state = scorer.initial(torch.tensor([0]))
            for token in prefix:
                candidates = torch.tensor([[token]])
                state = scorer.select(state, candidates, scorer.extend(state, candidates), torch.tensor([0]),
                                      torch.tensor([0]))
            return float(scorer.extend(state, torch.tensor([[EOS]]))[0][0, 0]) if whole else float(state.score[0])

        best, best_score = None, -math.inf
        for length in (1, 2):          # every hypothesis of max_new_tokens=2: ends on EOS, or stops at the limit
            for tokens in itertools.product(units, repeat=length):
                ended = tokens[-1] == EOS
                if EOS in tokens[:-1] or (length == 1 and not ended):
                    continue
                ctc = ctc_logprob(tokens[:-1], whole=True) if ended else ctc_logprob(tokens, whole=False)
                score = (1 - weight) * attention_logprob(model, batch, tokens) + weight * ctc
                if score > best_score:
                    best, best_score = tokens, score
    found = joint_generate(model, batch, weight, pre_beam=VOCAB, beams=VOCAB * VOCAB, max_new_tokens=2,
                           length_penalty=0.0, stop_tokens=(EOS,))
    assert tuple(found[0]) == (best[:-1] if best[-1] == EOS else best)


def test_bad_weights_and_missing_end_tokens_are_refused() -> None:
    model, batch = hybrid(), audio(0)
    with pytest.raises(ZooError, match=r"--decode-ctc-weight 1.5: give a weight in \[0, 1\]"):
        joint_generate(model, batch, 1.5, beams=2)
    with pytest.raises(ZooError, match="joint decoding needs one end token"):
        joint_generate(model, batch, 0.3, beams=2)
