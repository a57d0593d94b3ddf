"""The ``leaky`` cell against a float64 reference written from its module docstring's
equations (outputs and every gradient), its rate parameterization and init, and every
engine that runs it against ``loop``."""

from __future__ import annotations

import math

import pytest
import torch
from cell_checks import F64, assert_same, inputs, result

from rnnzoo.cells.leaky import LeakyCell
from rnnzoo.engines import loop, run_layer, valid_engines
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell

T, B, IN, H = 7, 4, 5, 6


def make(**kw) -> LeakyCell:
    torch.manual_seed(0)
    cell = create_cell("leaky", IN, H, **kw).to(F64)
    with torch.no_grad():  # nonzero bias, rates away from the init range's ends
        cell.bias.uniform_(-0.5, 0.5)
        cell.rate_logit.uniform_(-2.0, 2.0)
    return cell


def reference(cell, x, state, mask):
    """h~_t = tanh(W x_t + b + U (h_{t-1} * mask)); h_t = (1 - a) h_{t-1} + a h~_t,
    a = sigmoid(rate_logit)."""
    W, U, b = cell.weight_ih, cell.weight_hh, cell.bias
    a = 1.0 / (1.0 + torch.exp(-cell.rate_logit))
    (h,) = state
    ys = []
    for x_t in x:
        h_rec = h if mask is None else h * mask
        h_new = torch.tanh(x_t @ W.T + b + h_rec @ U.T)
        h = (1.0 - a) * h + a * h_new
        ys.append(h)
    return torch.stack(ys), (h,)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_matches_equations_outputs_and_all_gradients(masked):
    cell = make()
    x, state, mask = inputs(cell, T, B, masked=masked)
    got, ref = result(loop.run, cell, x, state, mask), result(reference, cell, x, state, mask)
    assert set(got[2]) == {"x", "state0", "weight_ih", "weight_hh", "bias", "rate_logit"}
    assert_same(got, ref)


def test_fixed_rates_get_no_gradient_and_match_equations():
    cell = make(learn_rate=False)
    assert not cell.rate_logit.requires_grad
    assert all(p.requires_grad for n, p in cell.named_parameters() if n != "rate_logit")
    x, state, mask = inputs(cell, T, B, masked=True)
    got, ref = result(loop.run, cell, x, state, mask), result(reference, cell, x, state, mask)
    assert "rate_logit" not in got[2]
    assert_same(got, ref)


def test_rate_one_is_the_tanh_rnn():
    # a -> 1 removes the leak: h_t = tanh(W x_t + b + U h_{t-1}), the rnn cell's equation
    cell = make()
    rnn = create_cell("rnn", IN, H).to(F64)
    with torch.no_grad():
        cell.rate_logit.fill_(50.0)  # sigmoid(50) == 1.0 in float64
        rnn.weight_ih.copy_(cell.weight_ih)
        rnn.weight_hh.copy_(cell.weight_hh)
        rnn.bias_ih.copy_(cell.bias)
        rnn.bias_hh.zero_()
    x, state, _ = inputs(cell, T, B)
    torch.testing.assert_close(loop.run(cell, x, state)[0], loop.run(rnn, x, state)[0])


def test_rates_initialized_log_uniform_in_range():
    torch.manual_seed(0)
    cell = create_cell("leaky", 3, 4000, min_rate=0.002, max_rate=0.5)
    a = cell.rate.double()
    assert a.min() >= 0.002 * (1 - 1e-5) and a.max() <= 0.5 * (1 + 1e-5)
    log_a = a.log()
    lo, hi = math.log(0.002), math.log(0.5)
    # log-uniform: log a is uniform, so each quarter of [lo, hi] holds ~1/4 of the units
    counts = torch.histc(log_a, bins=4, min=lo, max=hi)
    assert ((counts / 4000 - 0.25).abs() < 0.04).all(), counts
    assert abs(log_a.mean().item() - (lo + hi) / 2) < 0.05 * (hi - lo)


@pytest.mark.parametrize(
    "kw",
    [{"min_rate": 0.0}, {"max_rate": 1.0}, {"min_rate": 0.5, "max_rate": 0.4}],
)
def test_bad_rates_are_one_line_user_errors(kw):
    with pytest.raises(UserError) as err:
        SequenceClassifier("leaky", 1, 8, cell_kwargs=kw)
    msg = str(err.value)
    assert "\n" not in msg and "min_rate" in msg and "max_rate" in msg


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_every_engine_equals_loop(masked):
    cell = make()
    others = [e for e in valid_engines(cell, "cpu", 0.5 if masked else 0.0) if e != "loop"]
    assert others == ["fused"]  # the "leaky" kernel family; no torch built-in
    for engine in others:
        x, state, mask = inputs(cell, T, B, masked=masked)
        ref = result(loop.run, cell, x, state, mask)

        def run(c, x_, s, m, engine=engine):
            return run_layer(engine, c, x_, s, m)

        assert_same(result(run, cell, x, state, mask), ref, tol=1e-8)
