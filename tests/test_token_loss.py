"""The fused label-smoothed cross-entropy equals F.cross_entropy in value and gradient."""
import pytest
import torch
import torch.nn.functional as F

from heads.token_loss import IGNORE, smoothed_cross_entropy


def _labels(shape: tuple[int, ...], vocab: int, ignored: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, vocab, shape, generator=g)
    return labels.masked_fill(torch.rand(shape, generator=g) < ignored, IGNORE)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("ignored", [0.0, 0.3])
def test_value_and_gradient_equal_torch_cross_entropy(smoothing: float, ignored: float) -> None:
    vocab = 37
    logits = torch.randn(3, 5, vocab, generator=torch.Generator().manual_seed(1), requires_grad=True)
    labels = _labels((3, 5), vocab, ignored, seed=2)
    loss, nll = smoothed_cross_entropy(logits, labels, smoothing)
    (2.5 * loss).backward()
    ours = logits.grad.clone()
    logits.grad = None
    reference = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, label_smoothing=smoothing)
    (2.5 * reference).backward()
    torch.testing.assert_close(loss, reference.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours, logits.grad, rtol=1e-5, atol=1e-7)
    plain = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    torch.testing.assert_close(nll, plain.detach(), rtol=1e-6, atol=1e-6)
    assert not nll.requires_grad


def test_ignored_positions_get_no_gradient_and_all_ignored_gives_zero() -> None:
    logits = torch.randn(2, 4, 11, requires_grad=True)
    labels = torch.tensor([[1, 2, IGNORE, IGNORE], [IGNORE] * 4])
    loss, _ = smoothed_cross_entropy(logits, labels, 0.1)
    loss.backward()
    assert logits.grad[0, 2:].abs().sum() == 0 and logits.grad[1].abs().sum() == 0
    assert logits.grad[0, :2].abs().sum() > 0
    empty = torch.randn(1, 3, 11, requires_grad=True)
    zero, _ = smoothed_cross_entropy(empty, torch.full((1, 3), IGNORE), 0.1)
    zero.backward()
    assert zero.item() == 0.0 and empty.grad.abs().sum() == 0


def test_bf16_logits_get_a_bf16_gradient_close_to_the_fp32_one() -> None:
    logits = torch.randn(4, 9, 50)
    labels = _labels((4, 9), 50, 0.2, seed=3)
    low = logits.bfloat16().requires_grad_()
    smoothed_cross_entropy(low, labels, 0.1)[0].backward()
    high = logits.bfloat16().float().requires_grad_()
    smoothed_cross_entropy(high, labels, 0.1)[0].backward()
    assert low.grad.dtype == torch.bfloat16
    torch.testing.assert_close(low.grad.float(), high.grad, rtol=1e-2, atol=1e-4)


def test_gradcheck_in_double() -> None:
    logits = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[0, 5, IGNORE], [2, 2, 1]])

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return smoothed_cross_entropy(x, labels, 0.2)[0]

    # the forward computes in float32 (as every head's loss does), so compare loosely
    assert torch.autograd.gradcheck(loss_of, (logits,), eps=1e-3, atol=1e-3, rtol=1e-2)
