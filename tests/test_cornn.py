"""coRNN (rnnzoo/cells/cornn.py) against the paper's equations in float64: outputs, final state
and every gradient; init, packed-state layout, hyperparameters."""

from __future__ import annotations

import math

import pytest
import torch
from cell_reference import F64, H, I, assert_matches_reference, randomize_

from rnnzoo.registry import create_cell


def ref_cornn(cell, x, state, mask):
    """Rusch & Mishra 2021, eq. 3 with the damping explicit (the authors' code):
    z_n = z + dt (tanh(W y + Wz z + V u_n + b) - gamma y - eps z), y_n = y + dt z_n."""
    dt, gamma, eps = cell.dt, cell.gamma, cell.epsilon
    n = cell.hidden_size
    W, Wz = cell.weight_hh[:, :n], cell.weight_hh[:, n:]  # docstring: weight_hh = [W | Wz]
    V, b = cell.weight_ih, cell.bias
    y, z = state[0][:, :n], state[0][:, n:]
    ys = []
    for u in x:
        ym, zm = (y, z) if mask is None else (y * mask, z * mask)
        z = z + dt * (torch.tanh(ym @ W.T + zm @ Wz.T + u @ V.T + b) - gamma * y - eps * z)
        y = y + dt * z
        ys.append(y)
    return torch.stack(ys), (torch.cat([y, z], dim=1),)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("hparams", [{}, {"dt": 0.076, "gamma": 0.4, "epsilon": 8.0}])
def test_matches_paper_equations(masked, hparams):
    torch.manual_seed(0)
    cell = randomize_(create_cell("cornn", I, H, **hparams).to(F64))
    assert_matches_reference(cell, ref_cornn, masked)


def test_packed_state_and_output():
    cell = create_cell("cornn", I, H)
    assert cell.state_names == ("yz",) and cell.state_sizes == (2 * H,)
    assert cell.output_size == H and not cell.output_is_h
    xp = cell.input_projection(torch.randn(1, 2, I))[0]
    y, (yz,) = cell.step(xp, cell.zero_state(2))
    assert torch.equal(y, yz[:, :H])  # y_t is the first half of the packed state


def test_init_is_the_authors_linear_layer():
    torch.manual_seed(0)
    cell = create_cell("cornn", 1, 256)
    bound = 1 / math.sqrt(1 + 2 * 256)  # one nn.Linear(I + 2H, H) over [x, z, y]
    for p in cell.parameters():
        assert p.abs().max() <= bound and p.abs().max() > 0.95 * bound
    assert (cell.dt, cell.gamma, cell.epsilon) == (0.042, 2.7, 4.7)  # authors' sMNIST values


def test_fused_params_layout():
    cell = create_cell("cornn", I, H, dt=0.1, gamma=0.2, epsilon=0.3)
    p = cell.fused_params()
    assert p.kernel == "cornn" and p.w_hh is cell.weight_hh and p.w_ih is cell.weight_ih
    assert p.extra.tolist() == pytest.approx([0.1, 0.2, 0.3])
    mask = torch.rand(2, H)
    assert torch.equal(cell.fused_mask(mask), torch.cat([mask, mask], 1))
    assert set(cell.recurrent_matrices()) == {"W", "Wz"}


def test_bad_dt_raises():
    with pytest.raises(ValueError, match="dt"):
        create_cell("cornn", I, H, dt=0.0)
