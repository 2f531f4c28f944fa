"""Every backbone of the one registry loop (``tests/backbone_cases.py``: every registered backbone at
reduced size, the timm/torchaudio representatives, transformers folders): it is what its case says,
forward shapes, gradients reach every parameter, no NaN, padded batch == one by one, save/load.
Every head on each of them: ``tests/test_head_backbone_matrix.py``."""
import pytest
import torch

import zoo
from tests.backbone_cases import CASES, IDS, build_backbone
from tests.backbone_configs import small_args


def _inputs(modality, lengths):
    """A padded batch: (inputs, mask) with the given real lengths (text tokens, audio samples)."""
    if modality == "image":
        return torch.randn(len(lengths), 3, 32, 32), None
    if modality == "text":
        width = max(lengths)
        inputs = torch.randint(4, 50, (len(lengths), width))
    else:
        width = max(lengths)
        inputs = torch.randn(len(lengths), width)
    mask = torch.arange(width)[None] < torch.tensor(lengths)[:, None]
    return inputs * mask if modality == "audio" else inputs.masked_fill(~mask, 0), mask


LENGTHS = {"text": [7, 4], "audio": [8000, 5000], "image": [1, 1]}
# Reference implementations whose padding leaks into real frames, by their own design (case ids).
PADDING_LEAKS = {
    "torchaudio/conformer": "torchaudio's Conformer convolution module does not mask padded frames",
    "torchaudio/wav2vec2_model": "wav2vec2's group-norm feature extractor normalises over padding too",
}


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def built(request, tmp_path_factory):
    case = request.param
    return case.id, build_backbone(case, tmp_path_factory.mktemp("pretrained")), case


def test_is_what_its_case_says(built):
    name, backbone, case = built
    assert (backbone.modality, bool(backbone.causal)) == (case.modality, case.causal), name
    assert isinstance(backbone.padding_sensitive, bool)


def test_forward_backward_no_nan(built):
    name, backbone, _ = built
    backbone.train()
    inputs, mask = _inputs(backbone.modality, LENGTHS[backbone.modality])
    features = backbone(inputs, mask)
    assert features.tokens.dim() == 3 and features.tokens.shape[0] == inputs.shape[0]
    assert features.tokens.shape[-1] == backbone.dim
    assert torch.isfinite(features.tokens).all()
    if backbone.modality == "image":
        assert features.maps and all(m.dim() == 4 and m.shape[0] == 2 for m in features.maps)
    loss = features.tokens.float().pow(2).mean() + sum(m.float().mean() for m in features.maps)
    loss.backward()
    missing = [n for n, p in backbone.named_parameters() if p.requires_grad and (p.grad is None)]
    assert not missing, f"{name}: no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in backbone.parameters() if p.grad is not None)


def test_padded_batch_equals_one_by_one(built):
    name, backbone, _ = built
    if name in PADDING_LEAKS:
        pytest.skip(PADDING_LEAKS[name])
    backbone.eval()
    lengths = LENGTHS[backbone.modality]
    inputs, mask = _inputs(backbone.modality, lengths)
    with torch.no_grad():
        batched = backbone(inputs, mask)
        for row in range(len(lengths)):
            if backbone.modality == "image":
                single = backbone(inputs[row:row + 1])
                torch.testing.assert_close(batched.tokens[row], single.tokens[0], atol=1e-4, rtol=1e-4)
                continue
            single = backbone(inputs[row:row + 1, :lengths[row]], mask[row:row + 1, :lengths[row]])
            steps = single.tokens.shape[1]
            if batched.mask is not None:
                assert int(batched.mask[row].sum()) == steps
            torch.testing.assert_close(batched.tokens[row, :steps], single.tokens[0], atol=1e-4, rtol=1e-4)


def test_save_load_round_trip(built, tmp_path):
    name, backbone, _ = built
    backbone.eval()
    model = zoo.create_model(backbone, zoo.create_head("classification", backbone, num_classes=3))
    inputs, mask = _inputs(backbone.modality, LENGTHS[backbone.modality])
    model.save(tmp_path)
    loaded = zoo.load(tmp_path)
    with torch.no_grad():
        expected = model.eval()({"inputs": inputs, "mask": mask})["logits"]
        assert torch.equal(loaded({"inputs": inputs, "mask": mask})["logits"], expected)


ZOO_BUILT = [case.name for case in CASES if case.zoo_built]
# Real sizes in one padded batch: text tokens, audio samples, image (height, width) with sizes that
# are not multiples of the patch (8) and smaller than the padded 32 x 32.
MIXED = {"text": [7, 4, 1], "audio": [8000, 5000, 3000], "image": [(32, 32), (24, 16), (30, 21)]}


def _mixed_batch(modality):
    """(inputs, mask, per-row single inputs) for a padded batch of the MIXED sizes."""
    if modality != "image":
        inputs, mask = _inputs(modality, MIXED[modality])
        return inputs, mask, [inputs[i:i + 1, :n] for i, n in enumerate(MIXED[modality])]
    images = torch.randn(3, 3, 32, 32)
    mask = torch.zeros(3, 32, 32, dtype=torch.bool)
    for i, (h, w) in enumerate(MIXED["image"]):
        mask[i, :h, :w] = True
    return images * mask[:, None], mask, [images[i:i + 1, :, :h, :w] for i, (h, w) in enumerate(MIXED["image"])]


@pytest.mark.parametrize("name", ZOO_BUILT)
def test_masked_batch_is_independent_of_its_neighbours(name):
    """A padded batch with its mask gives each item exactly what it gets alone (real positions,
    and for images every pyramid map on its real cells), so features never depend on the batch."""
    torch.manual_seed(0)
    backbone = zoo.create_backbone(name, **small_args(name, zoo.BACKBONES.meta(name)["modality"])).eval()
    assert backbone.padding_sensitive is False and zoo.BACKBONES.meta(name)["padding_sensitive"] is False
    inputs, mask, singles = _mixed_batch(backbone.modality)
    with torch.no_grad():
        batched = backbone(inputs, mask)
        for row, single_input in enumerate(singles):
            single = backbone(single_input)
            real = batched.mask[row]
            assert int(real.sum()) == single.tokens.shape[1], name
            torch.testing.assert_close(batched.tokens[row][real], single.tokens[0], atol=1e-5, rtol=1e-5)
            for level, (padded_map, alone) in enumerate(zip(batched.maps, single.maps)):
                h, w = alone.shape[-2:]
                torch.testing.assert_close(padded_map[row, :, :h, :w], alone[0], atol=1e-5, rtol=1e-5)
                assert not padded_map[row, :, h:].any() and not padded_map[row, :, :, w:].any(), level
