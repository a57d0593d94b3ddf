"""The recurrent cells, one module per family; importing this package registers them all.

Every module in this package is imported here, so adding a cell is adding one file: a module
that defines a ``RecurrentCell`` subclass and registers it with ``@register_cell("name")``.
Registered names: ``rnnzoo.list_cells()``; aliases: ``rnnzoo.cell_aliases()``.
"""

import importlib
import pkgutil

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.cells.elman import ElmanCell
from rnnzoo.cells.gru import GRUCell
from rnnzoo.cells.indrnn import IndRNNCell
from rnnzoo.cells.intersection import IntersectionCell
from rnnzoo.cells.lstm import LSTMCell
from rnnzoo.cells.peephole import PeepholeLSTMCell
from rnnzoo.cells.ugrnn import UGRNNCell

#: modules that hold helpers, not cells
_NOT_CELLS = {"base", "init"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_CELLS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ElmanCell",
    "FusedParams",
    "GRUCell",
    "IndRNNCell",
    "IntersectionCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "RecurrentCell",
    "State",
    "UGRNNCell",
]
