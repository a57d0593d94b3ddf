"""LRU, minGRU, minLSTM: float64 references written from the papers' equations (outputs and
every parameter gradient), initialization, options and errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnzoo.registry import create_cell

F64 = torch.float64
T, B, H = 9, 3, 6
CELLS = ["lru", "mingru", "minlstm"]


# --- references, step by step from the module docstrings (real arithmetic throughout) -------


def ref_block(cell, o, x):
    """LayerNorm(x + GLU(GELU(o))) (x only when the block is residual)."""
    blk = cell.block
    w1, w2 = blk.glu.weight.chunk(2)
    c1, c2 = blk.glu.bias.chunk(2)
    v = F.gelu(o)
    y = (v @ w1.T + c1) * torch.sigmoid(v @ w2.T + c2)
    if blk.residual:
        y = y + x
    return F.layer_norm(y, (H,), blk.norm.weight, blk.norm.bias, blk.norm.eps)


def g_ref(v):
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def ref_mingru(cell, x, h, m):
    w_z, w_h = cell.weight_ih.chunk(2)
    b_z, b_h = cell.bias.chunk(2)
    ys = []
    for x_t in x:
        z = torch.sigmoid(x_t @ w_z.T + b_z)
        h = (1 - z) * (m * h) + z * g_ref(x_t @ w_h.T + b_h)
        ys.append(h if cell.block is None else ref_block(cell, h, x_t))
    return torch.stack(ys), h


def ref_minlstm(cell, x, h, m):
    w_f, w_i, w_h = cell.weight_ih.chunk(3)
    b_f, b_i, b_h = cell.bias.chunk(3)
    ys = []
    for x_t in x:
        f = torch.sigmoid(x_t @ w_f.T + b_f)
        i = torch.sigmoid(x_t @ w_i.T + b_i)
        h = f / (f + i) * (m * h) + i / (f + i) * g_ref(x_t @ w_h.T + b_h)
        ys.append(h if cell.block is None else ref_block(cell, h, x_t))
    return torch.stack(ys), h


def ref_lru(cell, x, h, m):
    h_re, h_im = h.chunk(2, dim=1)
    mod = torch.exp(-torch.exp(cell.nu_log))  # |lambda|
    phase = torch.exp(cell.theta_log)
    l_re, l_im = mod * torch.cos(phase), mod * torch.sin(phase)
    gamma = torch.exp(cell.gamma_log)
    ys = []
    for x_t in x:
        u_re, u_im = gamma * (x_t @ cell.B_re.T), gamma * (x_t @ cell.B_im.T)
        h_re, h_im = m * h_re, m * h_im  # recurrent dropout drops whole complex units
        h_re, h_im = l_re * h_re - l_im * h_im + u_re, l_re * h_im + l_im * h_re + u_im
        skip = x_t * cell.D if cell.D.dim() == 1 else x_t @ cell.D.T
        o = h_re @ cell.C_re.T - h_im @ cell.C_im.T + skip  # Re(C h) + D x
        ys.append(o if cell.block is None else ref_block(cell, o, x_t))
    return torch.stack(ys), torch.cat([h_re, h_im], dim=1)


REFS = {"lru": ref_lru, "mingru": ref_mingru, "minlstm": ref_minlstm}


def _cell(name, input_size, **kw):
    torch.manual_seed(0)
    cell = create_cell(name, input_size, H, **kw).to(F64)
    with torch.no_grad():  # move every parameter off its init (LayerNorm's 1 and 0 too)
        for p in cell.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return cell


def _loop(cell, x, h0, mask=None):
    h, ys = (h0,), []
    for xp_t in cell.input_projection(x).unbind(0):
        y, h = cell.step(xp_t, h, mask)
        ys.append(y)
    return torch.stack(ys), h[0]


def _grads(out, wrt, weights):
    loss = sum((o * w).sum() for o, w in zip(out, weights, strict=True))
    return torch.autograd.grad(loss, wrt)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("block", ["none", "glu"])
@pytest.mark.parametrize("input_size", [4, H])  # I != H, and I == H (diagonal D, residual)
@pytest.mark.parametrize("name", CELLS)
def test_step_matches_paper_equations(name, input_size, block, masked):
    cell = _cell(name, input_size, block=block)
    x = torch.randn(T, B, input_size, dtype=F64, requires_grad=True)
    h0 = torch.randn(B, cell.state_sizes[0], dtype=F64, requires_grad=True)
    mask = torch.bernoulli(torch.full((B, H), 0.6, dtype=F64)) / 0.6 if masked else None
    got = _loop(cell, x, h0, mask)
    ref = REFS[name](cell, x, h0, 1.0 if mask is None else mask)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    wrt = (x, h0, *cell.parameters())
    weights = [torch.randn_like(t) for t in got]
    names = ["x", "h0", *(n for n, _ in cell.named_parameters())]
    for n, a, b in zip(names, _grads(got, wrt, weights), _grads(ref, wrt, weights), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("name", CELLS)
def test_every_parameter_is_used(name):
    cell = _cell(name, H, block="glu")
    x = torch.randn(T, B, H, dtype=F64)
    ys, h = _loop(cell, x, torch.zeros(B, cell.state_sizes[0], dtype=F64))
    grads = torch.autograd.grad(ys.sum() + h.sum(), list(cell.parameters()))
    for (n, _), grad in zip(cell.named_parameters(), grads, strict=True):
        assert grad.abs().sum() > 0, n


# --- initialization --------------------------------------------------------------------------


def test_lru_ring_init_and_gamma():
    torch.manual_seed(0)
    cell = create_cell("lru", 1, 4096, r_min=0.4, r_max=0.9, max_phase=math.pi / 10)
    lam = cell.lam().detach()
    mod = lam.abs()
    assert mod.min() >= 0.4 - 1e-6 and mod.max() <= 0.9 + 1e-6
    # uniform on the ring in area: |lambda|^2 ~ U(0.16, 0.81), mean 0.485
    assert abs((mod**2).mean().item() - 0.485) < 0.01
    phase = torch.exp(cell.theta_log).detach()
    assert phase.min() >= 0 and phase.max() <= math.pi / 10 + 1e-6
    torch.testing.assert_close(torch.angle(lam), phase, rtol=1e-5, atol=1e-6)
    gamma = torch.exp(cell.gamma_log).detach()
    torch.testing.assert_close(gamma, torch.sqrt(1 - mod**2), rtol=1e-5, atol=1e-6)
    assert cell.recurrent_matrices()["lambda"].shape == (4096,)


def test_lru_default_ring_and_glorot_like_matrices():
    torch.manual_seed(0)
    cell = create_cell("lru", 64, 512)
    mod = cell.lam().detach().abs()
    assert mod.min() >= 0.9 - 1e-6 and mod.max() <= 0.999 + 1e-6
    assert abs(cell.B_re.std().item() - 1 / math.sqrt(2 * 64)) < 0.003  # N(0, 1/(2I))
    assert abs(cell.B_im.std().item() - 1 / math.sqrt(2 * 64)) < 0.003
    assert abs(cell.C_re.std().item() - 1 / math.sqrt(512)) < 0.001  # N(0, 1/H)
    assert cell.D.shape == (512, 64) and abs(cell.D.std().item() - 1 / 8) < 0.003
    square = create_cell("lru", 512, 512)
    assert square.D.shape == (512,) and abs(square.D.std().item() - 1.0) < 0.1
    assert square.block.residual and not cell.block.residual
    assert create_cell("lru", 3, 5, block="none").block is None


@pytest.mark.parametrize("name, gates", [("mingru", 2), ("minlstm", 3)])
def test_min_cells_init_is_nn_linear_default(name, gates):
    torch.manual_seed(0)
    cell = create_cell(name, 16, 256)
    assert cell.weight_ih.shape == (gates * 256, 16) and cell.bias.shape == (gates * 256,)
    for p in (cell.weight_ih, cell.bias):
        assert p.abs().max() <= 0.25 and p.abs().max() > 0.24  # U(-1/sqrt(I), 1/sqrt(I))
    assert cell.output_is_h and cell.block is None and cell.recurrent_matrices() == {}
    blocked = create_cell(name, 16, 256, block="glu")
    assert not blocked.output_is_h


def test_min_cells_keep_h_positive_from_zero_state():
    torch.manual_seed(0)
    for name in ("mingru", "minlstm"):
        cell = create_cell(name, 2, 8).double()
        x = 5 * torch.randn(50, 4, 2, dtype=F64)
        ys, _ = _loop(cell, x, torch.zeros(4, 8, dtype=F64))
        assert (ys > 0).all()  # g(v) > 0 and the gates are convex weights


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("lru", {"r_min": 0.9, "r_max": 0.5}, "r_min"),
        ("lru", {"r_max": 1.5}, "r_max"),
        ("lru", {"max_phase": 0.0}, "max_phase"),
        ("lru", {"block": "mlp"}, "block"),
        ("mingru", {"block": "transformer"}, "valid: none, glu"),
        ("minlstm", {"block": 3}, "block"),
    ],
)
def test_bad_options_raise_one_line(name, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        create_cell(name, 3, 5, **kwargs)
    assert "\n" not in str(err.value)
