"""The ViT's small-data options: conv and shifted-patch stems, locality attention, drop path; off by
default (old configs build the same modules and give the same outputs)."""
import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.backbones.vision import VisionTransformer, ViTConfig
from zoo.errors import ZooError
from zoo.stems import ConvStem, ShiftedPatchEmbed

SMALL = {"img_size": 16, "patch_size": 4, "dim": 32, "depth": 2, "heads": 2}


@pytest.mark.parametrize("patch", [2, 4, 8])
def test_conv_stem_strides_by_the_patch_with_log2_layers(patch):
    stem = ConvStem(patch, 3, 32)
    tokens, grid = stem(torch.randn(2, 3, 16, 24))
    assert grid == (16 // patch, 24 // patch) and tokens.shape == (2, grid[0] * grid[1], 32)
    assert len(stem.convs) == patch.bit_length() - 1
    assert [conv[0].stride for conv in stem.convs] == [(2, 2)] * len(stem.convs)
    assert stem.convs[-1][0].out_channels == 32 and stem.proj.kernel_size == (1, 1)


@pytest.mark.parametrize("patch", [1, 3, 7, 12])
def test_conv_stem_refuses_a_patch_that_is_no_power_of_two(patch):
    with pytest.raises(ZooError, match="power of 2"):
        ConvStem(patch, 3, 32)


def test_shifted_patches_are_the_image_and_its_four_diagonal_half_patch_shifts():
    """Brute force: every patch vector is the concatenation, per channel stack, of the five images' pixels."""
    torch.manual_seed(0)
    stem = ShiftedPatchEmbed(4, 1, 8)
    image = torch.randn(1, 1, 8, 8)
    captured = {}
    stem.norm.register_forward_hook(lambda module, args, out: captured.setdefault("patches", args[0]))
    stem(image)
    padded = F.pad(image, (2, 2, 2, 2))[0, 0]  # (12, 12)
    views = [image[0, 0]] + [padded[2 - dy: 10 - dy, 2 - dx: 10 - dx] for dy, dx in ((-2, -2), (-2, 2), (2, -2), (2, 2))]
    # the shift (2, 2) moves the top-left pixel to (2, 2)
    assert views[4][2, 2] == image[0, 0, 0, 0] and views[4][0, 0] == 0
    expected = torch.stack([torch.cat([v[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4].flatten() for v in views])
                            for r in range(2) for c in range(2)])  # (4 patches, 5 * 16)
    torch.testing.assert_close(captured["patches"][0], expected)


@pytest.mark.parametrize("options", [{"stem": "conv"}, {"stem": "spt"}, {"lsa": True}, {"drop_path": 0.2}])
def test_each_option_runs_and_trains(options):
    torch.manual_seed(0)
    backbone = VisionTransformer(ViTConfig(**SMALL, **options)).train()
    features = backbone(torch.randn(3, 3, 16, 16))
    assert features.tokens.shape == (3, 17, 32)
    features.tokens.sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_defaults_build_the_plain_vit():
    """A config without the new fields (an old checkpoint's) is the timm layout: same weights, same outputs."""
    torch.manual_seed(0)
    old = VisionTransformer(ViTConfig(**SMALL)).eval()
    new = VisionTransformer(ViTConfig(**SMALL, stem="patch", drop_path=0.0, lsa=False)).eval()
    assert list(new.state_dict()) == list(old.state_dict())
    new.load_state_dict(old.state_dict())
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(old(images).tokens, new(images).tokens)


def test_an_unknown_stem_is_refused_naming_the_field():
    with pytest.raises(ZooError, match="stem must be one of"):
        VisionTransformer(ViTConfig(**SMALL, stem="resnet"))


def test_small_data_variants_are_registered():
    names = set(zoo.BACKBONES.list())
    assert {"vit_tiny_conv", "vit_tiny_spt_lsa"} <= names
    assert zoo.BACKBONES.meta("vit_tiny_conv")["config"]["stem"] == "conv"
    spt = zoo.BACKBONES.meta("vit_tiny_spt_lsa")["config"]
    assert (spt["stem"], spt["lsa"]) == ("spt", True)
