"""Same seed, same numbers for any thread count: the fused kernels' fixed shards and the
thread-independent linear layers (readout, input maps) make a whole training step
bit-identical with torch.set_num_threads(1) and (2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnzoo.engines import fused_build
from rnnzoo.engines.stable_linear import StableLinear
from rnnzoo.model import SequenceClassifier


@pytest.fixture(scope="module", autouse=True)
def ops():
    return fused_build.load_ops()


def _with_threads(threads: int, fn):
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return fn()
    finally:
        torch.set_num_threads(saved)


def _linear_grads() -> list[torch.Tensor]:
    torch.manual_seed(0)
    layer = StableLinear(48, 10)
    x = torch.randn(3000, 48, requires_grad=True)  # 3 chunks of rows
    (layer(x) * torch.linspace(-1, 1, 10)).square().sum().backward()
    return [x.grad, layer.weight.grad, layer.bias.grad]


def test_stable_linear_matches_nn_linear_and_ignores_threads():
    one, two = _with_threads(1, _linear_grads), _with_threads(2, _linear_grads)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    ref = torch.nn.Linear(48, 10)
    x = torch.randn(3000, 48, requires_grad=True)
    (ref(x) * torch.linspace(-1, 1, 10)).square().sum().backward()
    for a, b in zip(one, [x.grad, ref.weight.grad, ref.bias.grad], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def _train(cell: str, input_size: int, layers: int) -> list[torch.Tensor]:
    """Three Adam steps with clipping; the parameters after them."""
    torch.manual_seed(0)
    model = SequenceClassifier(cell, input_size, 16, num_layers=layers, engine="fused")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(30, 130, input_size, generator=g)  # 130 rows: 2 shards
        y = torch.randint(0, 10, (130,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x)[0], y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    ("cell", "input_size", "layers"),
    [("lstm", 1, 1), ("gru", 28, 2), ("intersection", 3, 1)],
)
def test_training_steps_bit_identical_for_1_and_2_threads(cell, input_size, layers):
    one = _with_threads(1, lambda: _train(cell, input_size, layers))
    two = _with_threads(2, lambda: _train(cell, input_size, layers))
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)
