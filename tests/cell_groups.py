"""Which registered cells the generic tests (parametrized over the registry) run on.

The convolutional cells read image rows: their input must be a multiple of the row width
(28) and their hidden size channels x 28, so the generic tests' small sizes (I = 1..7,
H = 3..16) cannot build them. tests/test_convrnn.py and tests/test_convlstm.py cover the
same properties for them (equations, every gradient, engines == loop, masks, the model).
"""

from __future__ import annotations

from rnnzoo import list_cells

ROW_CELLS = ("convlstm", "convrnn")


def generic_cells() -> list[str]:
    """Registered cells that take any input and hidden size, sorted."""
    return [name for name in list_cells() if name not in ROW_CELLS]


#: native_mode of the cells that have one (every other cell: None)
NATIVE_MODES = {
    "rnn": "RNN_TANH",
    "irnn": "RNN_RELU",
    "lstm": "LSTM",
    "gru": "GRU",
    "peephole": None,
    "indrnn": None,
    "ugrnn": None,
    "intersection": None,
    "lru": None,
    "mingru": None,
    "minlstm": None,
    "leaky": None,
    "esn": None,
    "cornn": None,
    "lipschitz": None,
    "exprnn": None,
    "lmu": None,
}
