"""expRNN (rnnzoo/cells/exprnn.py) against the paper's equations in float64: outputs, final
state and every gradient (through the matrix exponential); orthogonality; init."""

from __future__ import annotations

import math

import pytest
import torch
from cell_reference import F64, H, I, assert_matches_reference, randomize_

from rnnzoo.cells.exprnn import skew_expm
from rnnzoo.registry import create_cell


def expm_taylor(a):
    """exp(A) by scaling and squaring of a 30-term Taylor series (independent of torch's)."""
    s = max(0, math.ceil(math.log2(max(a.abs().sum(1).max().item(), 1e-12))) + 1)
    a = a / 2**s
    term, out = torch.eye(a.shape[0], dtype=a.dtype), torch.eye(a.shape[0], dtype=a.dtype)
    for k in range(1, 30):
        term = term @ a / k
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def ref_exprnn(cell, x, state, mask):
    """Lezcano-Casado & Martinez-Rubio 2019: W = exp(A), A skew from P's upper triangle;
    h_t = modrelu(T x_t + W h_{t-1}), modrelu(z) = sign(z) relu(|z| + b)."""
    up = torch.triu(cell.log_recurrent, diagonal=1)
    W = expm_taylor(cell.skew_scale * (up - up.T))
    (h,) = state
    ys = []
    for x_t in x:
        hm = h if mask is None else h * mask
        z = x_t @ cell.weight_ih.T + hm @ W.T
        h = torch.sign(z) * torch.relu(torch.abs(z) + cell.bias)
        ys.append(h)
    return torch.stack(ys), (h,)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("kw", [{}, {"skew_scale": 0.1}])
def test_matches_paper_equations(masked, kw):
    torch.manual_seed(0)
    cell = randomize_(create_cell("exprnn", I, H, **kw).to(F64))
    with torch.no_grad():  # modReLU's kink: keep |z| + b away from 0 in this test
        cell.bias.fill_(0.05)
    assert_matches_reference(cell, ref_exprnn, masked, tol=1e-9)


def skew_cases():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(7, 7, generator=g, dtype=F64)
    blocks = torch.zeros(6, 6, dtype=F64)
    blocks[0, 1] = blocks[2, 3] = blocks[4, 5] = 0.8  # three equal 2x2 blocks: +-0.8i, thrice
    return {"random": p - p.T, "zero": torch.zeros(5, 5, dtype=F64), "repeated": blocks - blocks.T}


@pytest.mark.parametrize("case", ["random", "zero", "repeated"])
def test_skew_expm_and_its_gradient_match_torch_float64(case):
    a = skew_cases()[case]
    g = torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    ours, ref = a.clone().requires_grad_(), a.clone().requires_grad_()
    w_ours, w_ref = skew_expm(ours), torch.linalg.matrix_exp(ref)
    (w_ours * g).sum().backward()
    (w_ref * g).sum().backward()  # the gradient w.r.t. a general A, as torch defines it
    torch.testing.assert_close(w_ours, w_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.grad, ref.grad, rtol=0, atol=1e-11)


def test_skew_expm_float32_gradient_is_close_to_float64():
    torch.manual_seed(0)
    a = create_cell("exprnn", 1, 64).skew().detach().double()
    g = 30 * torch.randn(64, 64, dtype=F64)
    grads = []
    for dtype in (torch.float32, F64):
        leaf = a.to(dtype).requires_grad_()
        (skew_expm(leaf) * g.to(dtype)).sum().backward()
        grads.append(leaf.grad.double())
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-5 * grads[1].abs().max())


@pytest.mark.parametrize("skew_init", ["cayley", "henaff"])
def test_recurrent_weight_is_orthogonal(skew_init):
    torch.manual_seed(0)
    cell = create_cell("exprnn", 1, 9, skew_init=skew_init).to(F64)
    randomize_(cell)
    w = cell.recurrent_weight()
    torch.testing.assert_close(w @ w.T, torch.eye(9, dtype=F64), rtol=0, atol=1e-12)
    assert torch.linalg.det(w).item() == pytest.approx(1.0)  # SO(n): exp of a skew matrix


def test_cayley_init_blocks():
    torch.manual_seed(0)
    cell = create_cell("exprnn", 1, 64)
    a = cell.skew().detach()
    s = a[torch.arange(0, 64, 2), torch.arange(1, 64, 2)]
    assert (s <= 0).all() and (s >= -1.0 - 1e-6).all()  # -tan(t/2), t in [0, pi/2]
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[torch.arange(0, 64, 2), torch.arange(1, 64, 2)] = True
    mask = mask | mask.T
    assert not a[~mask].any()  # only the 2x2 blocks
    torch.testing.assert_close(a, -a.T)
    assert cell.bias.abs().max() <= 0.01
    assert 0.9 * math.sqrt(2) < cell.weight_ih.std().item() < 1.1 * math.sqrt(2)  # I = 1


def test_henaff_init_range_and_skew_scale_keeps_a():
    torch.manual_seed(0)
    a = create_cell("exprnn", 1, 64, skew_init="henaff").skew().detach()
    s = a[torch.arange(0, 64, 2), torch.arange(1, 64, 2)]
    assert s.abs().max() <= math.pi and s.abs().max() > 2.0
    torch.manual_seed(0)
    scaled = create_cell("exprnn", 1, 64, skew_init="henaff", skew_scale=0.1).skew().detach()
    torch.testing.assert_close(scaled, a)  # same A, stored as P = A / c


def test_fused_params_build_w_once():
    cell = create_cell("exprnn", I, H)
    p = cell.fused_params()
    assert p.kernel == "modrelu" and p.extra is cell.bias and not p.bias.any()
    torch.testing.assert_close(p.w_hh, cell.recurrent_weight())
    assert p.w_hh.requires_grad


def test_bad_kwargs_raise():
    with pytest.raises(ValueError, match="skew_init"):
        create_cell("exprnn", I, H, skew_init="haar")
    with pytest.raises(ValueError, match="skew_scale"):
        create_cell("exprnn", I, H, skew_scale=0)
