"""Attention: SDPA path == plain reference, causal masking, KV cache == full forward, masked rows finite."""
import math

import pytest
import torch

from zoo.layers.attention import Attention, KVCache, attention_mask
from zoo.layers.position import RotaryEmbedding


def reference_attention(layer, x, key_mask=None, causal=False):
    """Plain softmax(QK^T / sqrt(d)) V with the same weights, for comparison."""
    batch, steps, dim = x.shape
    q, k, v = layer.qkv(x).view(batch, steps, 3, layer.heads, layer.head_dim).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(layer.head_dim)  # (B, nh, T, T)
    allowed = torch.ones(batch, 1, steps, steps, dtype=torch.bool)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(steps, steps, dtype=torch.bool).tril()
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    return layer.proj(out.transpose(1, 2).reshape(batch, steps, dim))


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_reference_with_padding(causal):
    layer = Attention(32, 4).eval()
    x = torch.randn(3, 6, 32)
    key_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], dtype=torch.bool)
    mask, is_causal = attention_mask(key_mask, 6, causal)
    ours = layer(x, mask=mask, is_causal=is_causal)
    ref = reference_attention(layer, x, key_mask, causal)
    torch.testing.assert_close(ours[key_mask], ref[key_mask], atol=1e-5, rtol=1e-5)


def test_causal_fast_path_matches_reference_and_ignores_future():
    layer = Attention(32, 4).eval()
    x = torch.randn(2, 5, 32)
    mask, is_causal = attention_mask(None, 5, causal=True)
    assert mask is None and is_causal
    out = layer(x, is_causal=True)
    torch.testing.assert_close(out, reference_attention(layer, x, causal=True), atol=1e-5, rtol=1e-5)
    changed = x.clone()
    changed[:, 3:] += 1.0  # the future must not change earlier outputs
    torch.testing.assert_close(layer(changed, is_causal=True)[:, :3], out[:, :3])


@pytest.mark.parametrize("capacity", [None, 16])
def test_kv_cache_incremental_equals_full_forward(capacity):
    layer = Attention(32, 4).eval()
    x = torch.randn(2, 7, 32)
    full = layer(x, is_causal=True)
    cache = KVCache(num_layers=1, capacity=capacity)
    outs = []
    for start, stop in [(0, 3), (3, 4), (4, 5), (5, 7)]:
        key_mask = cache.append_mask(torch.ones(2, stop - start, dtype=torch.bool))
        mask, is_causal = attention_mask(key_mask, stop - start, causal=True, query_offset=cache.length)
        outs.append(layer(x[:, start:stop], mask=mask, is_causal=is_causal, cache=cache, layer=0))
        cache.advance(stop - start)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fully_masked_rows_are_finite_with_finite_gradients(dtype):
    layer = Attention(32, 4).to(dtype)
    x = torch.randn(2, 4, 32, dtype=dtype, requires_grad=True)
    key_mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)  # row 1 sees nothing
    mask, _ = attention_mask(key_mask, 4, causal=False)
    out = layer(x, mask=mask)
    out.float().sum().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_cross_attention_honours_context_mask():
    layer = Attention(32, 4, cross=True, context_dim=16).eval()
    x, context = torch.randn(1, 3, 32), torch.randn(1, 5, 16)
    context_mask = torch.tensor([[1, 1, 1, 0, 0]], dtype=torch.bool)
    mask, _ = attention_mask(context_mask, 3, causal=False)
    padded = layer(x, mask=mask, context_kv=layer.project_context(context))
    trimmed = layer(x, context_kv=layer.project_context(context[:, :3]))
    torch.testing.assert_close(padded, trimmed, atol=1e-5, rtol=1e-5)


def test_rope_rotates_channel_pairs_and_depends_only_on_relative_position() -> None:
    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 5, 8)  # (B, nh, T, hs)
    positions = torch.arange(5)
    rotated = rope(x, positions)
    angles = positions[:, None].float() * rope.inv_freq  # (T, hs/2)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    expected = torch.stack([x1 * angles.cos() - x2 * angles.sin(), x1 * angles.sin() + x2 * angles.cos()], -1)
    assert torch.allclose(rotated, expected.flatten(-2), atol=1e-6)
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    # per-row positions (B, T) give each row its own rotation; a shift changes no dot product
    shifted = rope(x, positions[None].repeat(2, 1) + torch.tensor([[0], [7]]))
    assert torch.allclose(shifted[0], rotated[0], atol=1e-6)
    q, k = x[:, :, :1], x[:, :, 1:2]
    near = (rope(q, torch.tensor([2])) * rope(k, torch.tensor([5]))).sum(-1)
    far = (rope(q, torch.tensor([12])) * rope(k, torch.tensor([15]))).sum(-1)
    assert torch.allclose(near, far, atol=1e-5)
    half = rope(x.to(torch.bfloat16), positions)
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), rotated, atol=5e-2)
    strided = torch.randn(2, 5, 3, 3, 8)[:, :, 1].transpose(1, 2)  # a non-contiguous slice, as q from fused qkv
    assert torch.allclose(rope(strided, positions), rope(strided.contiguous(), positions), atol=1e-6)


def reference_locality_attention(layer, x, key_mask=None):
    """Brute-force LSA: softmax(QK^T * temperature) V over every key but the query's own position."""
    batch, steps, dim = x.shape
    q, k, v = layer.qkv(x).view(batch, steps, 3, layer.heads, layer.head_dim).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) * layer.temperature  # (B, nh, T, T)
    allowed = ~torch.eye(steps, dtype=torch.bool).expand(batch, 1, steps, steps)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    return layer.proj(out.transpose(1, 2).reshape(batch, steps, dim))


def test_locality_self_attention_matches_brute_force_with_padding():
    torch.manual_seed(0)
    layer = Attention(32, 4, lsa=True).eval()
    assert layer.temperature.item() == pytest.approx(8 ** -0.5)
    with torch.no_grad():
        layer.temperature.fill_(0.7)   # a learned value, not the default scale
    x = torch.randn(3, 6, 32)
    key_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], dtype=torch.bool)
    mask, _ = attention_mask(key_mask, 6, causal=False)
    torch.testing.assert_close(layer(x, mask=mask)[key_mask], reference_locality_attention(layer, x, key_mask)[key_mask],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x), reference_locality_attention(layer, x), atol=1e-5, rtol=1e-5)


def test_locality_temperature_learns_and_a_lone_token_stays_finite():
    layer = Attention(16, 2, lsa=True)
    layer(torch.randn(2, 5, 16)).sum().backward()
    assert layer.temperature.grad is not None and layer.temperature.grad != 0
    token = torch.randn(1, 1, 16)
    alone = layer.eval()(token)   # no other key: it keeps its own, and padding does not reach it
    assert torch.isfinite(alone).all()
    mask, _ = attention_mask(torch.tensor([[1, 0, 0]], dtype=torch.bool), 3, causal=False)
    padded = layer(torch.cat([token, torch.randn(1, 2, 16)], dim=1), mask=mask)  # (1, 3, 16)
    torch.testing.assert_close(padded[:, :1], alone)


def test_locality_self_attention_refuses_cross_causal_and_cache():
    with pytest.raises(ValueError, match="lsa"):
        Attention(16, 2, cross=True, lsa=True)
    layer = Attention(16, 2, lsa=True)
    with pytest.raises(ValueError, match="encoders"):
        layer(torch.randn(1, 3, 16), is_causal=True)
