"""Cells: the contract (shapes, gradients, masks), equivalence with torch.nn and with the
equations in each module docstring, initialization (the registry: tests/test_registry.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from cell_groups import NATIVE_MODES, generic_cells
from torch import Tensor, nn

from rnnzoo.cells import RecurrentCell
from rnnzoo.registry import create_cell

T, B, D, H = 5, 3, 4, 6  # steps, batch, input width, hidden width
F64 = torch.float64
TESTS = Path(__file__).resolve().parent
ALL = generic_cells()  # the row cells (convrnn, convlstm) have their own files


def run(cell: RecurrentCell, x: Tensor, state=None, rec_mask=None):
    """The reference loop: one input projection, then step over xp.unbind(0)."""
    state = cell.zero_state(x.shape[1]) if state is None else state
    ys = []
    for xp_t in cell.input_projection(x).unbind(0):
        y, state = cell.step(xp_t, state, rec_mask)
        ys.append(y)
    return torch.stack(ys), state


def make(name: str, dtype=F64, **kw) -> RecurrentCell:
    torch.manual_seed(0)
    return create_cell(name, D, H, **kw).to(dtype)


def randomize_(cell: nn.Module) -> nn.Module:
    """Non-zero values everywhere (biases, peepholes), so equivalence tests see every term."""
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-0.6, 0.6)
    return cell


def random_state(cell: RecurrentCell, dtype=F64):
    return tuple(torch.randn(B, n, dtype=dtype) for n in cell.state_sizes)


# --- the contract, for every registered cell ---------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", ALL)
def test_shapes_dtype_finite(name, dtype):
    cell = make(name, dtype)
    x = torch.randn(T, B, D, dtype=dtype)
    ys, state = run(cell, x)
    assert ys.shape == (T, B, cell.output_size)
    assert ys.dtype == dtype
    assert len(state) == len(cell.state_names)
    assert [s.shape for s in state] == [(B, n) for n in cell.state_sizes]
    # h first; a cell whose output is not h may pack its states into one (coRNN [y|z])
    assert cell.state_names[0] == "h" or not cell.output_is_h
    assert torch.isfinite(ys).all() and all(torch.isfinite(s).all() for s in state)


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_gets_gradient(name):
    cell = make(name)  # default init: catches parameters an init leaves dead
    torch.manual_seed(1)
    x = torch.randn(T, B, D, dtype=F64, requires_grad=True)  # a graph even if all is frozen
    ys, state = run(cell, x)
    loss = (ys * torch.randn_like(ys)).sum() + sum((s * torch.randn_like(s)).sum() for s in state)
    loss.backward()
    for pname, p in cell.named_parameters():
        if not p.requires_grad:  # frozen by design (the esn reservoir): never a gradient
            assert p.grad is None, f"{name}.{pname} is frozen but got a gradient"
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"


#: element-wise linear recurrences: no recurrent weight; their references (masks included)
#: are in test_linear_recurrence.py
ELEMENTWISE = {"lru", "mingru", "minlstm"}
#: cells that build their recurrent matrices from parameters (LipschitzRNN's A and W, expRNN's
#: expm, the LMU's Legendre memory): their own tests check masks against the paper
COMPOSED = {"lipschitz", "exprnn", "lmu"}


@pytest.mark.parametrize("name", [n for n in ALL if n not in ELEMENTWISE | COMPOSED])
def test_rec_mask_acts_only_in_recurrent_product(name):
    cell = randomize_(make(name))
    xp_t = cell.input_projection(torch.randn(1, B, D, dtype=F64))[0]
    state = random_state(cell)

    def step(mask=None, w_scale=1.0):
        with torch.no_grad():
            w = cell.weight_hh.clone()
            cell.weight_hh.mul_(w_scale)
            out = cell.step(xp_t, state, mask)
            cell.weight_hh.copy_(w)
        return out

    def same(a, b):
        torch.testing.assert_close(a[0], b[0])
        for sa, sb in zip(a[1], b[1], strict=True):
            torch.testing.assert_close(sa, sb)

    ones = torch.ones(B, H, dtype=F64)
    same(step(ones), step(None))
    # a zero mask removes h from the product but not from the carried state (gates' h_{t-1})
    same(step(0 * ones), step(None, w_scale=0.0))
    same(step(2 * ones), step(None, w_scale=2.0))
    assert not torch.allclose(step(0 * ones)[0], step(None)[0])


@pytest.mark.parametrize("name", ALL)
def test_post_step_hook_and_attributes(name):
    cell = make(name)
    assert cell.native_mode == NATIVE_MODES.get(name)
    assert isinstance(cell.fused_kernel, str)
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    cell.post_step_()  # default init is inside every cell's constraints
    for k, v in cell.state_dict().items():
        assert torch.equal(v, before[k]), f"{name}.post_step_ changed {k}"


# --- equivalence with torch.nn ------------------------------------------------------------

TORCH_REFS = [
    ("lstm", nn.LSTMCell, {}),
    ("gru", nn.GRUCell, {}),
    ("rnn", nn.RNNCell, {"nonlinearity": "tanh"}),
    ("irnn", nn.RNNCell, {"nonlinearity": "relu"}),
]


@pytest.mark.parametrize("name, ref_cls, ref_kw", TORCH_REFS)
def test_matches_torch_cell(name, ref_cls, ref_kw):
    torch.manual_seed(0)
    ref = ref_cls(D, H, **ref_kw).to(F64)
    cell = create_cell(name, D, H).to(F64)
    cell.load_state_dict(ref.state_dict())  # same names and gate order
    x = torch.randn(T, B, D, dtype=F64)
    state = random_state(cell)
    ys, last = run(cell, x, state)
    ref_state = state if len(state) == 2 else state[0]
    ref_ys = []
    for x_t in x.unbind(0):
        ref_state = ref(x_t, ref_state)
        ref_ys.append(ref_state[0] if isinstance(ref_state, tuple) else ref_state)
    ref_ys = torch.stack(ref_ys)
    torch.testing.assert_close(ys, ref_ys, rtol=1e-12, atol=1e-12)
    ref_last = ref_state if isinstance(ref_state, tuple) else (ref_state,)
    for a, b in zip(last, ref_last, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # and the gradients, through the folded biases too
    w = torch.randn_like(ys)
    (ys * w).sum().backward()
    (ref_ys * w).sum().backward()
    for (pname, p), q in zip(cell.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=pname)


def test_lstm_rec_mask_is_applied_to_h_only():
    torch.manual_seed(0)
    ref = nn.LSTMCell(D, H).to(F64)
    cell = create_cell("lstm", D, H).to(F64)
    cell.load_state_dict(ref.state_dict())
    x_t = torch.randn(B, D, dtype=F64)
    h, c = random_state(cell)
    mask = torch.bernoulli(torch.full((B, H), 0.5, dtype=F64)) * 2.0
    y, (h1, c1) = cell.step(cell.input_projection(x_t[None])[0], (h, c), mask)
    h_ref, c_ref = ref(x_t, (h * mask, c))
    torch.testing.assert_close(h1, h_ref)
    torch.testing.assert_close(c1, c_ref)


def test_peephole_without_peepholes_is_lstm():
    torch.manual_seed(0)
    ref = nn.LSTMCell(D, H).to(F64)
    cell = create_cell("peephole", D, H).to(F64)
    with torch.no_grad():
        cell.weight_ch.zero_()
    cell.load_state_dict(ref.state_dict(), strict=False)
    x = torch.randn(T, B, D, dtype=F64)
    ys, _ = run(cell, x)
    state = None
    for x_t in x.unbind(0):
        state = ref(x_t, state)
    torch.testing.assert_close(ys[-1], state[0], rtol=1e-12, atol=1e-12)


# --- equivalence with the docstring equations (cells without a torch built-in) -----------
# written gate by gate from the module docstrings, on the raw input, so they also pin down the
# fused layout (gate order, bias folding) the fused engine relies on.


def _mm(h, rec_mask, w):
    return (h if rec_mask is None else h * rec_mask) @ w.T


def ref_peephole(cell, x, state, rec_mask):
    h, c = state
    wi, wf, wg, wo = cell.weight_ih.chunk(4)
    ui, uf, ug, uo = cell.weight_hh.chunk(4)
    bi, bf, bg, bo = (cell.bias_ih + cell.bias_hh).chunk(4)
    pi, pf, po = cell.weight_ch.chunk(3)
    ys = []
    for x_t in x:
        i = torch.sigmoid(x_t @ wi.T + _mm(h, rec_mask, ui) + bi + pi * c)
        f = torch.sigmoid(x_t @ wf.T + _mm(h, rec_mask, uf) + bf + pf * c)
        g = torch.tanh(x_t @ wg.T + _mm(h, rec_mask, ug) + bg)
        c = f * c + i * g
        o = torch.sigmoid(x_t @ wo.T + _mm(h, rec_mask, uo) + bo + po * c)
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), (h, c)


def ref_indrnn(cell, x, state, rec_mask):
    (h,) = state
    ys = []
    for x_t in x:
        h_rec = h if rec_mask is None else h * rec_mask
        h = torch.relu(x_t @ cell.weight_ih.T + cell.bias + cell.weight_hh * h_rec)
        ys.append(h)
    return torch.stack(ys), (h,)


def ref_ugrnn(cell, x, state, rec_mask):
    (h,) = state
    wc, wg = cell.weight_ih.chunk(2)
    uc, ug = cell.weight_hh.chunk(2)
    bc, bg = cell.bias.chunk(2)
    ys = []
    for x_t in x:
        c = torch.tanh(x_t @ wc.T + _mm(h, rec_mask, uc) + bc)
        g = torch.sigmoid(x_t @ wg.T + _mm(h, rec_mask, ug) + bg)
        h = g * h + (1 - g) * c
        ys.append(h)
    return torch.stack(ys), (h,)


def ref_intersection(cell, x, state, rec_mask):
    (h,) = state
    sizes = (D, H, D, H)  # g_y, g_h, y_in, h_in
    w_gy, w_gh, w_y, w_h = cell.weight_ih.split(sizes)
    u_gy, u_gh, u_y, u_h = cell.weight_hh.split(sizes)
    b_gy, b_gh, b_y, b_h = cell.bias.split(sizes)
    ys = []
    for x_t in x:
        y_in = torch.tanh(x_t @ w_y.T + _mm(h, rec_mask, u_y) + b_y)
        h_in = torch.tanh(x_t @ w_h.T + _mm(h, rec_mask, u_h) + b_h)
        g_y = torch.sigmoid(x_t @ w_gy.T + _mm(h, rec_mask, u_gy) + b_gy)
        g_h = torch.sigmoid(x_t @ w_gh.T + _mm(h, rec_mask, u_gh) + b_gh)
        ys.append(g_y * x_t + (1 - g_y) * y_in)
        h = g_h * h + (1 - g_h) * h_in
    return torch.stack(ys), (h,)


EQUATION_REFS = {
    "peephole": ref_peephole,
    "indrnn": ref_indrnn,
    "ugrnn": ref_ugrnn,
    "intersection": ref_intersection,
}


def test_every_non_native_cell_has_an_equation_reference():
    # here, or in the cell's own tests/test_<cell>.py (which then holds the reference test)
    own = {n for n in ALL if (TESTS / f"test_{n}.py").exists()}
    assert {n for n in ALL if NATIVE_MODES[n] is None} - own == set(EQUATION_REFS) | ELEMENTWISE


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", sorted(EQUATION_REFS))
def test_matches_docstring_equations(name, masked):
    cell = randomize_(make(name))
    x = torch.randn(T, B, D, dtype=F64)
    state = random_state(cell)
    mask = torch.bernoulli(torch.full((B, H), 0.5, dtype=F64)) * 2.0 if masked else None
    ys, last = run(cell, x, state, mask)
    with torch.no_grad():
        ref_ys, ref_last = EQUATION_REFS[name](cell, x, state, mask)
    torch.testing.assert_close(ys, ref_ys, rtol=1e-12, atol=1e-12)
    for a, b in zip(last, ref_last, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# --- initialization -----------------------------------------------------------------------


def test_irnn_init():
    torch.manual_seed(0)
    cell = create_cell("irnn", 64, 64)
    assert torch.equal(cell.weight_hh, torch.eye(64))
    assert 0.0009 < cell.weight_ih.std().item() < 0.0011  # N(0, 0.001^2), 4096 draws
    assert not cell.bias_ih.any() and not cell.bias_hh.any()
    scaled = create_cell("irnn", 3, 5, recurrent_gain=0.5)
    assert torch.equal(scaled.weight_hh, 0.5 * torch.eye(5))


def test_rnn_init_orthogonal():
    cell = create_cell("rnn", 3, 32)
    w = cell.weight_hh.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(32), rtol=0, atol=1e-5)
    assert not torch.allclose(w, torch.eye(32), atol=0.1)  # orthogonal, not the identity
    assert not cell.bias_ih.any() and not cell.bias_hh.any()
    bound = 1 / math.sqrt(32)
    assert cell.weight_ih.abs().max() <= bound


@pytest.mark.parametrize("name", ["lstm", "peephole"])
@pytest.mark.parametrize("forget_bias", [None, 2.5])
def test_lstm_forget_bias(name, forget_bias):
    kw = {} if forget_bias is None else {"forget_bias": forget_bias}
    cell = create_cell(name, D, H, **kw)
    expected = 1.0 if forget_bias is None else forget_bias
    b = (cell.bias_ih + cell.bias_hh).detach()
    assert torch.equal(b[H : 2 * H], torch.full((H,), expected))
    assert not b[:H].any() and not b[2 * H :].any()


def test_gated_cells_gate_biases():
    ug = create_cell("ugrnn", D, H, gate_bias=2.0)
    assert not ug.bias[:H].any() and torch.equal(ug.bias[H:], torch.full((H,), 2.0))
    ir = create_cell("intersection", D, H, gate_bias=1.5, skip_bias=-1.0)
    expected = torch.cat([torch.full((D,), -1.0), torch.full((H,), 1.5), torch.zeros(D + H)])
    assert torch.equal(ir.bias.detach(), expected)


def test_indrnn_init_range():
    cell = create_cell("indrnn", D, 256)
    u = cell.weight_hh
    assert cell.recurrent_max_abs == pytest.approx(2 ** (1 / 784))
    assert u.min() >= 0 and u.max() <= 2 ** (1 / 784) and u.max() > 0.9
    short = create_cell("indrnn", D, 256, seq_len=28)
    assert short.recurrent_max_abs == pytest.approx(2 ** (1 / 28))
    ranged = create_cell("indrnn", D, 256, recurrent_min_abs=0.5, recurrent_max_abs=0.9)
    assert ranged.weight_hh.min() >= 0.5 and ranged.weight_hh.max() <= 0.9


@pytest.mark.parametrize("constrain", [True, False])
def test_indrnn_post_step_clamps(constrain):
    cell = create_cell(
        "indrnn", D, H, recurrent_min_abs=0.5, recurrent_max_abs=0.9, constrain_recurrent=constrain
    )
    wild = torch.tensor([5.0, -5.0, 0.1, -0.1, 0.0, 0.7])
    with torch.no_grad():
        cell.weight_hh.copy_(wild)
    cell.post_step_()
    expected = torch.tensor([0.9, -0.9, 0.5, -0.5, 0.5, 0.7]) if constrain else wild
    torch.testing.assert_close(cell.weight_hh.detach(), expected)


def test_bad_cell_kwargs_raise():
    with pytest.raises(ValueError, match="recurrent_init"):
        create_cell("rnn", D, H, recurrent_init="eye")
    with pytest.raises(ValueError, match="recurrent_min_abs"):
        create_cell("indrnn", D, H, recurrent_min_abs=2.0, recurrent_max_abs=1.0)
    with pytest.raises(TypeError, match="forget_bias"):
        create_cell("gru", D, H, forget_bias=1.0)


@pytest.mark.parametrize("name", ALL)
def test_output_is_h_flag_matches_the_step(name):
    # the model reads the last output from the final state when output_is_h: it must be true
    torch.manual_seed(0)
    cell = create_cell(name, 3, 5).double()
    xp = cell.input_projection(torch.randn(1, 4, 3, dtype=torch.float64))[0]
    state = tuple(torch.randn(4, n, dtype=torch.float64) for n in cell.state_sizes)
    y, new_state = cell.step(xp, state)
    same = y.shape == new_state[0].shape and torch.equal(y, new_state[0])
    assert same == cell.output_is_h
