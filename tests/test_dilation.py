"""Dilated layers (time-to-batch) against a float64 reference loop that feeds step t the state
of step t - d directly (outputs, final state and every gradient), on every engine a cell
supports."""

from __future__ import annotations

import pytest
import torch
from cell_checks import F64, assert_same, inputs, result

from rnnzoo import dilation
from rnnzoo.engines import run_layer, valid_engines
from rnnzoo.registry import create_cell

T, B = 7, 3  # 7 steps: padded for every d in (2, 3, 4, 5)
CELLS = {  # name: (input size, hidden size)
    "gru": (4, 5),
    "lstm": (4, 5),
    "intersection": (4, 5),  # its output is not its state
    "leaky": (4, 5),
    "esn": (4, 5),
    "convlstm": (28, 56),
}


def reference(dil: int):
    """Step t reads s_{t-d} (s_0 for t < d), indexing the list of past states directly."""

    def run(cell, x, state, mask):
        ys, states = [], []
        for t, x_t in enumerate(x.unbind(0)):
            prev = state if t < dil else states[t - dil]
            y, s = cell.step(cell.input_projection(x_t[None])[0], prev, mask)
            ys.append(y)
            states.append(s)
        return torch.stack(ys), states[-1]

    return run


def dilated(engine: str, dil: int):
    def run(cell, x, state, mask):
        xb = dilation.to_batch(x, dil)  # (T'/d, d*B, I)
        sb = tuple(dilation.repeat_rows(s, dil) for s in state)
        ys, final = run_layer(engine, cell, xb, sb, dilation.repeat_rows(mask, dil))
        return dilation.from_batch(ys, x.shape[0], dil), dilation.final_state(
            final, x.shape[0], dil
        )

    return run


def make(name: str):
    torch.manual_seed(0)
    cell = create_cell(name, *CELLS[name]).to(F64)
    with torch.no_grad():  # nonzero biases and peepholes: every term is exercised
        for p in cell.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return cell


@pytest.mark.parametrize("dil", [1, 2, 3, 4, 5, 7, 9])
def test_time_to_batch_round_trip(dil):
    x = torch.randn(T, B, 2)
    xb = dilation.to_batch(x, dil)
    steps = dilation.padded_steps(T, dil)
    assert xb.shape == (steps // dil, dil * B, 2)
    assert torch.equal(dilation.from_batch(xb, T, dil), x)
    for t in range(T):  # row r*B + b of block i holds step i*d + r
        i, r = divmod(t, dil)
        assert torch.equal(xb[i, r * B : (r + 1) * B], x[t])
    assert (xb.reshape(steps, B, 2)[T:] == 0).all()  # zero steps after the end


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("dil", [1, 2, 3, 5])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_dilated_layer_equals_reference_on_every_engine(name, dil, masked):
    cell = make(name)
    engines = valid_engines(cell, "cpu", 0.5 if masked else 0.0)
    assert "loop" in engines and (name == "intersection" or "fused" in engines)
    x, state, mask = inputs(cell, T, B, masked=masked)
    ref = result(reference(dil), cell, x, state, mask)
    for engine in engines:
        assert_same(result(dilated(engine, dil), cell, x, state, mask), ref, tol=1e-8)


def test_dilation_changes_the_result():
    # d = 2 is not d = 1: step 1 starts from s_0, not from s_1
    cell = make("gru")
    x, state, _ = inputs(cell, T, B)
    with torch.no_grad():
        one, two = (
            dilated("loop", 1)(cell, x, state, None),
            dilated("loop", 2)(cell, x, state, None),
        )
    torch.testing.assert_close(one[0][0], two[0][0])  # step 0 reads s_0 either way
    assert not torch.allclose(one[0][1], two[0][1])
