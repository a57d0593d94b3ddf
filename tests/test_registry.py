"""The registry: names and aliases, duplicates refused, an unknown name is one line with a
hint."""

from __future__ import annotations

import pytest
from cell_groups import NATIVE_MODES, generic_cells

import rnnzoo
from rnnzoo.cells import IntersectionCell, PeepholeLSTMCell
from rnnzoo.registry import create_cell, list_cells, register_cell, resolve_name

D, H = 4, 6  # input width, hidden width
ALL = generic_cells()


def test_registry_names_and_aliases():
    assert sorted(NATIVE_MODES) == ALL
    rnns = ["convrnn", "cornn", "exprnn", "indrnn", "irnn", "rnn", "ugrnn"]
    assert list_cells("*rnn") == rnns
    assert rnnzoo.cell_aliases() == {"rnn+": "intersection", "peephole_lstm": "peephole"}
    assert isinstance(create_cell("rnn+", D, H), IntersectionCell)
    assert isinstance(create_cell("peephole_lstm", D, H), PeepholeLSTMCell)
    assert resolve_name("LSTM") == "lstm"
    assert rnnzoo.is_cell("rnn+") and not rnnzoo.is_cell("transformer")


def test_registry_duplicates_raise():
    with pytest.raises(ValueError, match="already registered"):
        register_cell("lstm")(object)
    with pytest.raises(ValueError, match="already registered"):
        register_cell("fresh_name", aliases=("rnn+",))(object)
    assert not rnnzoo.is_cell("fresh_name")  # nothing half-registered


def test_unknown_cell_one_line_error_with_hint():
    with pytest.raises(ValueError) as err:
        create_cell("lstn", D, H)
    msg = str(err.value)
    assert "\n" not in msg
    assert "did you mean 'lstm'" in msg
    assert all(name in msg for name in ALL)
