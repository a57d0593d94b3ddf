"""LMU (rnnzoo/cells/lmu.py) against the paper's equations in float64: outputs, final state
and every gradient; the Legendre system and its zero-order hold (checked with scipy); init;
theta following the data's sequence length."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cell_reference import F64, H, I, assert_matches_reference, randomize_
from scipy.signal import cont2discrete

from rnnzoo.engines import fused_build
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell

ORDER = 6


def legendre_zoh(order, theta):
    """Voelker et al. 2019 eq. 2 (A, B of the delay's Legendre system), discretized by
    scipy's zero-order hold with dt = 1: returns Abar (d, d), Bbar (d,) in float64."""
    a = np.zeros((order, order))
    for i in range(order):
        for j in range(order):
            a[i, j] = (2 * i + 1) * (-1.0 if i < j else (-1.0) ** (i - j + 1))
    b = np.array([(2 * i + 1) * (-1.0) ** i for i in range(order)])
    ad, bd, *_ = cont2discrete(
        (a / theta, b[:, None] / theta, np.eye(order), np.zeros((order, 1))), dt=1.0, method="zoh"
    )
    return torch.tensor(ad, dtype=F64), torch.tensor(bd[:, 0], dtype=F64)


def ref_lmu(cell, x, state, mask):
    """u = e_x.x + e_h.h + e_m.m; m = Abar m + Bbar u; h = tanh(W_x x + W_h h + W_m m)."""
    a_bar, b_bar = legendre_zoh(cell.order, cell.theta)
    n = cell.hidden_size
    h, m = state[0][:, :n], state[0][:, n:]
    ys = []
    for x_t in x:
        hm = h if mask is None else h * mask
        u = x_t @ cell.encoder_x + hm @ cell.encoder_h + m @ cell.encoder_m  # (B,)
        m = m @ a_bar.T + u[:, None] * b_bar[None, :]
        h = torch.tanh(x_t @ cell.kernel_x.T + hm @ cell.kernel_h.T + m @ cell.kernel_m.T)
        ys.append(h)
    return torch.stack(ys), (torch.cat([h, m], dim=1),)


@pytest.fixture
def f64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # the cell computes its buffers in the default dtype
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("theta", [None, 3.5])
def test_matches_paper_equations(masked, theta, f64_default):
    torch.manual_seed(0)
    cell = randomize_(create_cell("lmu", I, H, order=ORDER, theta=theta, seq_len=9))
    assert cell.theta == (9.0 if theta is None else theta)
    assert_matches_reference(cell, ref_lmu, masked)


def test_fused_params_are_the_drivers_step(f64_default):
    # the driver's step (rnnzoo/engines/csrc/lmu.h) on fused_params == the cell's step
    torch.manual_seed(0)
    cell = randomize_(create_cell("lmu", I, H, order=ORDER))
    p = cell.fused_params()
    assert p.kernel == "lmu" and p.w_hh.shape == (H, H + ORDER)
    assert p.w_ih.shape == (H + 1, I) and not p.bias.any()
    e_h, e_m, b_bar, a_bar = p.extra.split([H, ORDER, ORDER, ORDER * ORDER])
    x, hm, mask = torch.randn(1, 2, I), torch.randn(2, H + ORDER), torch.rand(2, H)
    X = x[0] @ p.w_ih.T + p.bias
    hr, m = hm[:, :H] * mask, hm[:, H:]
    u = X[:, H] + hr @ e_h + m @ e_m
    m_t = m @ a_bar.view(ORDER, ORDER).T + u[:, None] * b_bar
    h_t = torch.tanh(X[:, :H] + torch.cat([hr, m_t], 1) @ p.w_hh.T)
    y, (hm_next,) = cell.step(cell.input_projection(x)[0], (hm,), mask)
    torch.testing.assert_close(h_t, y)
    torch.testing.assert_close(m_t, hm_next[:, H:])
    assert torch.equal(cell.fused_mask(mask), torch.cat([mask, torch.ones(2, ORDER)], 1))


def test_packed_matrix_is_the_steps_linear_map(f64_default):
    # [h | m] -> [pre-activation | m_t] without the input: one (H + d) square matrix
    torch.manual_seed(0)
    cell = randomize_(create_cell("lmu", I, H, order=ORDER))
    hm = torch.randn(2, H + ORDER)
    s = hm @ cell.packed_matrix().T
    y, (hm_next,) = cell.step(torch.zeros(2, H + 1), (hm,))
    torch.testing.assert_close(torch.tanh(s[:, :H]), y)
    torch.testing.assert_close(s[:, H:], hm_next[:, H:])
    assert cell.recurrent_matrices()["packed"].shape == (H + ORDER, H + ORDER)


def test_init_is_the_papers_psmnist_model():
    torch.manual_seed(0)
    cell = create_cell("lmu", 1, 212)
    assert cell.order == 256 and cell.theta == 784.0
    assert torch.equal(cell.encoder_x.detach(), torch.ones(1))
    for p in (cell.encoder_h, cell.encoder_m, cell.kernel_x, cell.kernel_h):
        assert not p.any()
    std = (2 / (212 + 256)) ** 0.5  # Glorot normal
    assert 0.95 * std < cell.kernel_m.std().item() < 1.05 * std
    trainable = sum(p.numel() for p in cell.parameters())
    assert trainable == 99897  # the paper's 102k minus its 2130-weight readout


@pytest.mark.parametrize(("seq_len", "theta"), [(784, 784.0), (28, 28.0)])
def test_theta_follows_the_data(seq_len, theta):
    cfg = {"cell": "lmu", "hidden_size": 4, "cell_kwargs": {"order": 3, "seq_len": None}}
    model = SequenceClassifier.from_config(cfg, input_size=1, num_classes=10, seq_len=seq_len)
    assert model.cells[0].theta == theta


def test_bad_kwargs_raise():
    with pytest.raises(ValueError, match="order"):
        create_cell("lmu", I, H, order=0)
    with pytest.raises(ValueError, match="theta"):
        create_cell("lmu", I, H, theta=-1.0)


def test_own_driver_refuses_a_convolution():
    # the LMU's driver has no convolution product: conv_width is refused, not ignored
    cell = create_cell("lmu", I, H, order=ORDER)
    p = cell.fused_params()
    x, hm = torch.randn(2, 3, I), torch.zeros(3, H + ORDER)
    args = ("lmu", x, p.w_ih.detach(), p.bias, p.w_hh.detach(), p.extra.detach(), [hm], None)
    ops = fused_build.load_ops()
    assert ops.forward(*args, False, 0)[0].shape == (2, 3, H + ORDER)
    with pytest.raises(RuntimeError, match="no conv_width"):
        ops.forward(*args, False, 4)
