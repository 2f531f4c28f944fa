"""The call forms timm/transformers users reach for: model(tensor), generate(input_ids=..., num_beams=...),
a callable tokenizer; each equal to the batch-dict form."""
from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.generation import transformers_options
from zoo.tokenizer import Tokenizer

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "the bird sang"] * 20


@pytest.fixture(scope="module")
def lm() -> zoo.ZooModel:
    torch.manual_seed(0)
    tokenizer = Tokenizer.train(TEXTS, vocab_size=40)
    return zoo.create_model("text_decoder_tiny", "lm", tokenizer=tokenizer,
                            backbone_args=dict(vocab_size=tokenizer.vocab_size, dim=32, depth=2, heads=2)).eval()


def test_a_plain_tensor_and_its_mask_give_the_batch_dict_outputs(lm: zoo.ZooModel) -> None:
    ids, mask = lm.tokenizer.batch(["the cat", "a dog ran in"])
    with torch.no_grad():
        expected = lm({"inputs": ids, "mask": mask})["logits"]
        assert torch.equal(lm(ids, mask.long())["logits"], expected)
        assert torch.equal(lm(ids[:1, :2])["logits"], lm({"inputs": ids[:1, :2]})["logits"])
    with pytest.raises(ZooError, match="inside the batch dict"):
        lm({"inputs": ids}, mask)
    with pytest.raises(ZooError, match="batch dict or an inputs tensor, got list"):
        lm([[1, 2]])


def test_transformers_style_generate_equals_ours(lm: zoo.ZooModel) -> None:
    encoded = lm.tokenizer(["the cat", "a dog ran in"], bos=True, left_pad=True)
    batch = {"inputs": encoded["input_ids"], "mask": encoded["attention_mask"]}
    greedy = lm.generate(batch, max_new_tokens=6)
    assert lm.generate(**encoded, max_new_tokens=6) == greedy
    assert lm.generate(**encoded, max_new_tokens=6, do_sample=False, temperature=0.9) == greedy
    assert lm.generate(**encoded, max_new_tokens=6, num_beams=3) == lm.generate(batch, max_new_tokens=6, beams=3)
    sampled = lm.generate(**encoded, max_new_tokens=6, do_sample=True, top_k=5, seed=3)
    assert sampled == lm.generate(batch, max_new_tokens=6, temperature=1.0, top_k=5, seed=3)
    with pytest.raises(ZooError, match="exactly one"):
        lm.generate(batch, input_ids=encoded["input_ids"])
    with pytest.raises(ZooError, match="exactly one"):
        lm.generate(max_new_tokens=3)


def test_transformers_option_names_map_to_ours() -> None:
    assert transformers_options({"num_beams": 4, "do_sample": False, "temperature": 0.7}) == {"beams": 4,
                                                                                            "temperature": 0.0}
    assert transformers_options({"do_sample": True}) == {"temperature": 1.0}
    assert transformers_options({"do_sample": True, "temperature": 0.5}) == {"temperature": 0.5}
    with pytest.raises(ZooError, match="beams or num_beams"):
        transformers_options({"num_beams": 2, "beams": 3})


def test_the_tokenizer_called_on_texts_gives_ids_and_mask(lm: zoo.ZooModel) -> None:
    tokenizer = lm.tokenizer
    out = tokenizer(["the cat", "a dog ran in the park"])
    ids, mask = tokenizer.batch(["the cat", "a dog ran in the park"])
    assert torch.equal(out["input_ids"], ids) and torch.equal(out["attention_mask"], mask)
    one = tokenizer("the cat", eos=True)
    assert one["input_ids"].tolist() == [tokenizer.encode("the cat") + [tokenizer.eos_id]]
    left = tokenizer(["the cat", "a dog ran in the park"], left_pad=True)["attention_mask"]
    assert not left[0, 0] and left[0, -1] and left.sum() == mask.sum()
