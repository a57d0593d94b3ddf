"""Cells hand their gate activations to an attached observer (``RecurrentCell.observe``):
what they observe is what ``step`` computed, and observing changes nothing."""

from __future__ import annotations

import pytest
import torch
from cell_groups import ROW_CELLS

from rnnzoo.cells import RecurrentCell
from rnnzoo.registry import create_cell, list_cells

B, D, H = 3, 4, 5
F64 = torch.float64
#: gates each built-in cell reports (cells not listed have none)
GATES = {
    "lstm": ("i", "f", "o"),
    "peephole": ("i", "f", "o"),
    "gru": ("r", "z"),
    "ugrnn": ("g",),
    "intersection": ("g_y", "g_h"),
    "mingru": ("z",),
    "minlstm": ("f", "i"),  # normalized, f' + i' = 1
    "convlstm": ("i", "f", "o"),  # (B, C*W) maps
}


def _step(cell: RecurrentCell, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, B, cell.input_size, generator=g, dtype=F64)
    state = tuple(torch.randn(B, n, generator=g, dtype=F64) for n in cell.state_sizes)
    return cell.step(cell.input_projection(x)[0], state)


def _cell(name: str) -> RecurrentCell:
    torch.manual_seed(0)
    sizes = (28, 56) if name in ROW_CELLS else (D, H)  # the row cells read rows of 28
    cell = create_cell(name, *sizes).double()
    with torch.no_grad():  # non-zero biases everywhere so every term shows
        for p in cell.parameters():
            p.uniform_(-0.6, 0.6)
    return cell


@pytest.mark.parametrize("name", list_cells())
def test_observing_changes_nothing_and_reports_gates(name):
    cell = _cell(name)
    y0, s0 = _step(cell)
    seen: list[dict] = []
    cell.observer = seen.append
    try:
        y1, s1 = _step(cell)
    finally:
        cell.observer = None
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    for a, b in zip(s1, s0, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    expected = GATES.get(name, ())
    assert len(seen) == (1 if expected else 0)
    if expected:
        assert tuple(seen[0]) == expected
        for gate in seen[0].values():
            assert gate.shape[0] == B and gate.dim() == 2
            assert bool(((gate > 0) & (gate < 1)).all())  # sigmoid activations


def test_lstm_gates_are_the_equation_gates():
    cell = _cell("lstm")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, B, D, generator=g, dtype=F64)
    h, c = (torch.randn(B, H, generator=g, dtype=F64) for _ in range(2))
    seen: list[dict] = []
    cell.observer = seen.append
    cell.step(cell.input_projection(x)[0], (h, c))
    w_ih, w_hh = cell.weight_ih.chunk(4), cell.weight_hh.chunk(4)
    b = (cell.bias_ih + cell.bias_hh).chunk(4)
    for k, name in ((0, "i"), (1, "f"), (3, "o")):  # order i, f, g, o
        ref = torch.sigmoid(x[0] @ w_ih[k].T + h @ w_hh[k].T + b[k])
        torch.testing.assert_close(seen[0][name], ref)


def test_gru_gates_are_the_equation_gates():
    cell = _cell("gru")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, B, D, generator=g, dtype=F64)
    h = torch.randn(B, H, generator=g, dtype=F64)
    seen: list[dict] = []
    cell.observer = seen.append
    cell.step(cell.input_projection(x)[0], (h,))
    w_ih, w_hh = cell.weight_ih.chunk(3), cell.weight_hh.chunk(3)
    b_ih, b_hh = cell.bias_ih.chunk(3), cell.bias_hh.chunk(3)
    for k, name in ((0, "r"), (1, "z")):
        ref = torch.sigmoid(x[0] @ w_ih[k].T + b_ih[k] + h @ w_hh[k].T + b_hh[k])
        torch.testing.assert_close(seen[0][name], ref)
