"""Gradient flow through time and spectra: the numbers against autograd and against values
computed by hand; every registered cell; the rescaling that keeps 1e-360 out of underflow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cell_groups import ROW_CELLS

from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import list_cells
from rnnzoo.report.gradflow import grad_flow, row_norms
from rnnzoo.report.probe import cells_of, loop_copy, probe
from rnnzoo.report.spectra import model_spectra

F64 = torch.float64


def _model(cell: str, hidden: int = 4, inputs: int = 3, **kw) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(cell, inputs, hidden, engine="loop", **kw).double().eval()


def _data(T: int, B: int = 3, inputs: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, inputs, generator=g, dtype=F64), torch.randint(
        0, 10, (B,), generator=g
    )


def _autograd_curve(model: SequenceClassifier, x, y) -> np.ndarray:
    """Reference, written out: one layer stepped by hand, retain_grad on every h_t (x requires
    grad so that h_t does even when no parameter trains, e.g. an echo state network)."""
    (cell,) = cells_of(model)
    x = x.clone().requires_grad_(True)
    state = cell.zero_state(x.shape[1])
    hs, ys = [], []
    for xp_t in cell.input_projection(x).unbind(0):
        y_t, state = cell.step(xp_t, state)
        state[0].retain_grad()
        hs.append(state[0])
        ys.append(y_t)
    last = state[0] if cell.output_is_h else ys[-1]
    loss = F.cross_entropy(model.readout(last), y, reduction="sum")
    loss.backward()
    zero = torch.zeros(x.shape[1], dtype=F64)
    norms = [(h.grad.norm(dim=1) if h.grad is not None else zero).mean() for h in hs]
    with np.errstate(divide="ignore"):
        return np.log10(torch.stack(norms).detach().numpy())


@pytest.mark.parametrize("name", list_cells())
def test_grad_flow_matches_autograd_for_every_cell(name):
    # I = H (no input map in front of any cell); the row cells read rows of 28 into (2, 28)
    inputs, hidden = (28, 56) if name in ROW_CELLS else (4, 4)
    model = _model(name, hidden=hidden, inputs=inputs)
    with torch.no_grad():  # non-zero biases and larger weights: every path carries gradient
        for p in model.parameters():
            p.uniform_(-0.8, 0.8)
    x, y = _data(T=12, inputs=inputs)
    flow = grad_flow(loop_copy(model), x, y)
    ref = _autograd_curve(model, x, y)
    assert flow.layers == ["layer0"]
    np.testing.assert_allclose(flow.log10_norms[0], ref, rtol=0, atol=1e-10)
    last = flow.last_step(0)
    assert flow.log10_first_over_last(0) == pytest.approx(ref[0] - ref[last], abs=1e-10)


def test_grad_flow_by_hand_far_below_float64():
    """W_hh = 0.5 I, no input weights, zero input: h stays 0, tanh'(0) = 1, so
    dL_i/dh_t = 0.5^(T-t) W_r^T (softmax(b_r) - e_{y_i}) exactly. At T = 1200 the first step is
    ~1e-361: plain float64 would give 0."""
    T = 1200
    model = _model("rnn", cell_kwargs={"recurrent_init": "identity", "recurrent_gain": 0.5})
    with torch.no_grad():
        cells_of(model)[0].weight_ih.zero_()
    x = torch.zeros(T, 3, 3, dtype=F64)
    y = torch.tensor([0, 3, 7])
    flow = grad_flow(loop_copy(model), x, y)
    p = torch.softmax(model.readout.bias, 0)
    last = (p - F.one_hot(y, 10).to(F64)) @ model.readout.weight  # (B, H) = dL_i/dh_T
    expected = math.log10(last.norm(dim=1).mean().item()) + np.arange(T - 1, -1, -1) * math.log10(
        0.5
    )
    assert flow.passes > 1 and flow.log10_scale > 0  # it had to rescale
    np.testing.assert_allclose(flow.log10_norms[0], expected, rtol=0, atol=1e-9)
    assert flow.log10_first_over_last(0) == pytest.approx((T - 1) * math.log10(0.5), abs=1e-9)
    assert flow.first_over_last(0) == 0.0  # below float64's range as a plain number


def test_rescaled_pass_equals_plain_float64():
    model = _model("lstm", hidden=5, num_layers=2)
    x, y = _data(T=30)
    copy = loop_copy(model)
    plain = grad_flow(copy, x, y)
    assert plain.passes == 1 and plain.log10_scale == 0.0
    from rnnzoo.report.gradflow import _measure

    scaled = _measure(copy, x.to(F64), y, 2.0**3)  # every step back multiplies by 8
    hops = np.arange(29, -1, -1)
    for k in range(2):
        np.testing.assert_allclose(
            np.log10(scaled[k]) - hops * math.log10(8.0), plain.log10_norms[k], atol=1e-10
        )


def test_bidirectional_stack_has_a_curve_per_layer_and_direction():
    model = _model("gru", num_layers=2, bidirectional=True)
    flow = grad_flow(loop_copy(model), *_data(T=9))
    assert flow.layers == ["layer0", "layer0.reverse", "layer1", "layer1.reverse"]
    assert all(np.isfinite(c).all() for c in flow.log10_norms)


def test_row_norms_do_not_underflow():
    g = torch.tensor([[3e-200, 4e-200], [0.0, 0.0]], dtype=F64)
    assert g.norm(dim=1)[0] == 0.0  # what the naive norm gives
    torch.testing.assert_close(row_norms(g), torch.tensor([5e-200, 0.0], dtype=F64))


def test_probe_leaves_the_cells_as_they_were():
    model = _model("lstm")
    x, _ = _data(T=6)
    before, _ = model(x)
    with probe(model, grad=True, record=True) as records:
        model(x)
    assert len(records[0].probes) == 6 and len(records[0].hidden) == 6
    assert set(records[0].gates) == {"i", "f", "o"}
    cell = cells_of(model)[0]
    assert "step" not in cell.__dict__ and cell.observer is None
    after, _ = model(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_loop_copy_keeps_the_training_rng_stream():
    model = SequenceClassifier("rnn", 1, 8)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    copy = loop_copy(model)
    assert torch.equal(torch.rand(3), expected)
    assert copy.engine_name == "loop" and next(copy.parameters()).dtype == F64


# --- spectra -------------------------------------------------------------------------------


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal_init_spectral_radius_is_the_gain(gain):
    model = SequenceClassifier("rnn", 1, 64, cell_kwargs={"recurrent_gain": gain})
    (spec,), notes = model_spectra(model)
    assert notes == [] and (spec.layer, spec.name, spec.kind) == ("layer0", "W_hh", "matrix")
    assert spec.spectral_radius == pytest.approx(gain, abs=1e-5)
    assert spec.sigma_max == pytest.approx(gain, abs=1e-5)
    np.testing.assert_allclose(np.abs(spec.eigenvalues), gain, atol=1e-5)  # all on the circle


def test_gated_and_diagonal_spectra():
    lstm = SequenceClassifier("lstm", 1, 6, num_layers=2)
    spectra, _ = model_spectra(lstm)
    assert [(s.layer, s.name) for s in spectra] == [
        (layer, f"W_h{g}") for layer in ("layer0", "layer1") for g in "ifgo"
    ]
    block = lstm.cells[0].weight_hh[6:12].double()  # W_hf
    assert spectra[1].sigma_max == pytest.approx(torch.linalg.matrix_norm(block, 2).item())
    ind = SequenceClassifier("indrnn", 1, 6)
    (spec,), _ = model_spectra(ind)
    u = ind.cells[0].weight_hh.detach().double()
    assert spec.kind == "diagonal" and spec.spectral_radius == pytest.approx(u.abs().max().item())
    np.testing.assert_allclose(spec.eigenvalues.real, u.numpy())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_grad_flow_on_cuda_equals_cpu():
    model = _model("lstm", num_layers=2)
    x, y = _data(T=20)
    cpu = grad_flow(loop_copy(model), x, y)
    gpu = grad_flow(loop_copy(model.cuda()), x.cuda(), y.cuda())
    for a, b in zip(cpu.log10_norms, gpu.log10_norms, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8)
