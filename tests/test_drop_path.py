"""Stochastic depth: identity in eval, ~rate of samples dropped and an unbiased mean in training,
linear rates over a Stack, and a rate-0 block equal bit for bit to the block without the option."""
import pytest
import torch

import zoo
from zoo.layers.block import Block, BlockConfig
from zoo.layers.drop_path import DropPath
from zoo.layers.stack import Stack, drop_path_rates


def test_eval_is_the_identity():
    layer = DropPath(0.5).eval()
    x = torch.randn(8, 3, 4)
    assert layer(x) is x


def test_training_drops_about_rate_of_samples_and_keeps_the_expectation():
    torch.manual_seed(0)
    rate, samples = 0.3, 20000
    layer = DropPath(rate).train()
    out = layer(torch.ones(samples, 2, 3))  # (N, 2, 3)
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(dim=1)
    kept = (per_sample == 1 / (1 - rate)).all(dim=1)
    assert bool((dropped | kept).all())   # a whole sample is dropped or kept, never part of one
    assert abs(dropped.float().mean().item() - rate) < 0.015
    assert abs(out.mean().item() - 1.0) < 0.02


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_a_rate_outside_zero_to_one_is_refused(rate):
    with pytest.raises(ValueError, match="drop_path"):
        DropPath(rate)


def test_stack_spreads_the_rate_linearly_from_zero():
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert drop_path_rates(0.3, 1) == [0.0]
    stack = Stack(BlockConfig(16, 2, drop_path=0.2), depth=3)
    assert [block.drop_path.rate for block in stack.blocks] == pytest.approx([0.0, 0.1, 0.2])


@pytest.mark.parametrize("conformer", [False, True])
def test_rate_zero_is_the_old_block_bit_for_bit(conformer):
    torch.manual_seed(0)
    old = Block(BlockConfig(16, 2, conformer=conformer, conv_kernel=3)).train()
    new = Block(BlockConfig(16, 2, conformer=conformer, conv_kernel=3, drop_path=0.0)).train()
    new.load_state_dict(old.state_dict())
    x = torch.randn(2, 5, 16)
    assert torch.equal(old(x), new(x))


def test_a_dropped_sample_passes_through_the_block_unchanged():
    """With a rate near 1 nearly every branch is dropped: those samples leave the block as they came."""
    torch.manual_seed(0)
    block = Block(BlockConfig(16, 2, drop_path=0.999)).train()
    x = torch.randn(64, 5, 16)
    unchanged = (block(x) == x).flatten(1).all(dim=1)
    assert unchanged.float().mean() > 0.9
    plain = Block(BlockConfig(16, 2))
    plain.load_state_dict(block.state_dict())
    assert torch.equal(block.eval()(x), plain.eval()(x))   # eval: every branch is kept


@pytest.mark.parametrize("name, args", [("vit_tiny", {"img_size": 16, "patch_size": 4, "dim": 16, "heads": 2}),
                                        ("text_encoder_tiny", {"vocab_size": 50, "dim": 16, "heads": 2}),
                                        ("speech_encoder_tiny", {"dim": 16, "heads": 2})])
def test_backbone_configs_pass_drop_path_to_their_stack(name, args):
    backbone = zoo.create_backbone(name, depth=3, drop_path=0.2, **args)
    assert [block.drop_path.rate for block in backbone.stack.blocks] == pytest.approx([0.0, 0.1, 0.2])
