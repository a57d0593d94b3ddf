"""The fused minLSTM kernel at extreme gate pre-activations: its normalized gates
f' = (1 + e^-k_i) / (2 + e^-k_f + e^-k_i) are scaled so that no exp overflows (a direct
formula gives inf / inf once k_f, k_i < -88 in float32, < -709 in float64). Checked against
a float64 reference with exact softplus (logaddexp; the cell's F.softplus is linear past 20,
off by up to e^-20): outputs, final state and every gradient."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnzoo.engines import fused, fused_build
from rnnzoo.registry import create_cell

F64 = torch.float64
# k_f and k_i from this grid, every pair: far past float32's and float64's exp range, both
# signs, and small
EXTREMES = [-1000.0, -750.0, -90.0, -20.0, -1.0, 0.0, 1.0, 20.0, 90.0, 1000.0]
H = len(EXTREMES) ** 2  # one hidden unit per (k_f, k_i) pair; not a multiple of 8 (tails)


@pytest.fixture(scope="module")
def ops():
    """The built kernels (fails, not skips: the fused engine must build on CI machines)."""
    return fused_build.load_ops()


def extreme_cell(dtype):
    """minLSTM (I = 2) whose biases put every (k_f, k_i) pair of EXTREMES on one unit, with
    k_h's bias from -90 to 90 (both branches of g) and small weights, so k varies over time.
    Built in float64, then cast: the same cell for every dtype."""
    torch.manual_seed(0)
    cell = create_cell("minlstm", 2, H).to(F64)
    pairs = torch.tensor(list(itertools.product(EXTREMES, EXTREMES)), dtype=F64)  # (H, 2)
    with torch.no_grad():
        cell.weight_ih.normal_(0.0, 0.3)
        cell.bias[:H] = pairs[:, 0]
        cell.bias[H : 2 * H] = pairs[:, 1]
        cell.bias[2 * H :] = torch.linspace(-90.0, 90.0, H, dtype=F64)
    return cell.to(dtype)


def reference(cell, x, state, mask):
    """The minLSTM step in float64 from its equations, softplus exact at any |k|; called
    like an engine's run."""
    (h,), m = state, 1.0 if mask is None else mask
    ys = []
    for x_t in x:
        k_f, k_i, k_h = (x_t @ cell.weight_ih.T + cell.bias).chunk(3, dim=-1)
        d = torch.logaddexp(-k_f, 0 * k_f) - torch.logaddexp(-k_i, 0 * k_i)  # log i - log f
        g = torch.where(k_h >= 0, k_h + 0.5, torch.sigmoid(k_h))
        h = torch.sigmoid(-d) * (m * h) + torch.sigmoid(d) * g
        ys.append(h)
    return torch.stack(ys), (h,)


def run(engine_run, cell, dtype, mask):
    """Outputs, final h and the gradients of x, h0 and every parameter, in float64."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 3, 2, generator=g, dtype=F64).to(dtype).requires_grad_()
    h0 = (0.5 * torch.randn(3, H, generator=g, dtype=F64)).to(dtype).requires_grad_()
    ys, (h,) = engine_run(cell, x, (h0,), None if mask is None else mask.to(dtype))
    w = torch.linspace(-1.0, 1.0, ys.numel(), dtype=dtype).view_as(ys)
    loss = (w * ys).sum() + (0.3 * h * h).sum()
    grads = torch.autograd.grad(loss, [x, h0, *cell.parameters()])
    return [t.double() for t in (ys, h, *grads)]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
def test_minlstm_kernel_at_extreme_gates_matches_reference(ops, dtype, masked):
    g = torch.Generator().manual_seed(2)
    mask = (torch.rand(3, H, generator=g, dtype=F64) > 0.3).double() / 0.7 if masked else None
    ref = run(reference, extreme_cell(F64), F64, mask)
    got = run(fused.run, extreme_cell(dtype), dtype, mask)
    names = ["ys", "h_T", "x", "h0", "weight_ih", "bias"]
    # float32: k = -1000 + w x is itself off by up to ulp(1000) = 6e-5
    tol = 1e-10 if dtype == F64 else 2e-4
    for name, a, b in zip(names, got, ref, strict=True):
        assert torch.isfinite(a).all(), name
        # relative to the tensor's scale: k_h up to 90 makes h ~ 90
        scale = b.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a / scale, b / scale, rtol=tol, atol=tol, msg=name)
