"""LipschitzRNN (rnnzoo/cells/lipschitz.py) against the paper's equations in float64: outputs,
final state and every gradient; A and W from symmetric / skew parts; init."""

from __future__ import annotations

import copy

import pytest
import torch
from cell_reference import F64, H, I, assert_matches_reference, randomize_

from rnnzoo.registry import create_cell


def ref_lipschitz(cell, x, state, mask):
    """Erichson et al. 2021, eq. 3: h <- h + eps A h + eps tanh(W h + U x + b), with
    A = beta (M_A - M_A^T) + (1 - beta)(M_A + M_A^T) - gamma I (W from M_W alike)."""
    beta, gamma, eps = cell.beta, cell.gamma, cell.eps
    eye = torch.eye(cell.hidden_size, dtype=F64)

    def compose(m):
        sym, skew = 0.5 * (m + m.T), 0.5 * (m - m.T)  # M = sym + skew
        return 2 * beta * skew + 2 * (1 - beta) * sym - gamma * eye

    A, W = compose(cell.weight_a), compose(cell.weight_w)
    (h,) = state
    ys = []
    for x_t in x:
        hm = h if mask is None else h * mask
        h = h + eps * (hm @ A.T) + eps * torch.tanh(hm @ W.T + x_t @ cell.weight_ih.T + cell.bias)
        ys.append(h)
    return torch.stack(ys), (h,)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("hparams", [{}, {"beta": 0.8, "gamma": 0.1, "eps": 0.3}])
def test_matches_paper_equations(masked, hparams):
    torch.manual_seed(0)
    cell = randomize_(create_cell("lipschitz", I, H, **hparams).to(F64))
    assert_matches_reference(cell, ref_lipschitz, masked)


def test_matrices_symmetric_and_skew_parts():
    torch.manual_seed(0)
    cell = create_cell("lipschitz", I, 8, beta=1.0, gamma=0.5).to(F64)
    a, w = cell.matrices()
    eye = torch.eye(8, dtype=F64)
    torch.testing.assert_close(a + a.T, -2 * 0.5 * eye)  # beta = 1: skew-symmetric - gamma I
    sym = create_cell("lipschitz", I, 8, beta=0.0, gamma=0.0).to(F64)
    a, _ = sym.matrices()
    torch.testing.assert_close(a, a.T)  # beta = 0: symmetric


def test_init_std_follows_the_authors_gaussian_init():
    torch.manual_seed(0)
    cell = create_cell("lipschitz", 1, 128)  # std = init_std / H = 32 / 128
    for m in (cell.weight_a, cell.weight_w):
        assert 0.24 < m.std().item() < 0.26
    assert not cell.bias.any()
    assert (cell.beta, cell.gamma, cell.eps) == (0.65, 0.001, 0.01)


def test_fused_params_stack_a_and_w():
    cell = create_cell("lipschitz", I, H)
    p = cell.fused_params()
    a, w = cell.matrices()
    assert p.kernel == "lipschitz" and p.w_hh.shape == (2 * H, H)
    torch.testing.assert_close(p.w_hh, torch.cat([a, w]))
    assert p.w_hh.requires_grad and p.extra.tolist() == pytest.approx([0.01])


def test_deepcopy_after_a_forward():
    cell = create_cell("lipschitz", I, H)
    cell.input_projection(torch.randn(2, 1, I))  # caches A and W with a graph
    clone = copy.deepcopy(cell)
    assert clone._seq_weights is None


@pytest.mark.parametrize("kw", [{"beta": 1.5}, {"eps": 0.0}])
def test_bad_hparams_raise(kw):
    with pytest.raises(ValueError):
        create_cell("lipschitz", I, H, **kw)
