"""The FLOP count of a training step: grouped and transposed convolutions counted as computed."""

from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")

from bench.torch_bench import step_flops  # noqa: E402


@pytest.mark.parametrize("conv, shape, forward", [
    # depthwise 3x3 (SegFormer's Mix-FFN): torch's own backward formula ignores groups
    (lambda: torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), (2, 32, 16, 16),
     2 * 2 * 16 * 16 * 32 * 9),
    (lambda: torch.nn.Conv2d(8, 16, 1), (2, 8, 16, 16), 2 * 2 * 16 * 16 * 16 * 8),
    (lambda: torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), (1, 8, 16, 16),
     2 * 8 * 8 * 16 * 4 * 9),
    (lambda: torch.nn.ConvTranspose2d(8, 4, 2, stride=2), (1, 8, 8, 8), 2 * 8 * 8 * 8 * 4 * 4),
])
def test_step_flops_is_three_forwards_of_a_convolution(conv, shape, forward):
    """Forward + grad input + grad weight: three times the forward's multiply-adds x 2."""
    rec = types.SimpleNamespace(model=conv(), loss=lambda m, b: m(b).sum())
    x = torch.randn(*shape, requires_grad=True)
    assert step_flops(rec, x) == 3 * forward


def test_an_input_that_needs_no_gradient_costs_one_backward():
    rec = types.SimpleNamespace(model=torch.nn.Conv2d(4, 4, 3, padding=1, groups=4),
                                loss=lambda m, b: m(b).sum())
    assert step_flops(rec, torch.randn(1, 4, 8, 8)) == 2 * (2 * 8 * 8 * 4 * 9)
