"""rnnzoo: benchmark recurrent cells on Sequential MNIST and its relatives.

Bring your own cell: subclass ``rnnzoo.RecurrentCell`` (the contract, ``docs/cells.md``) and
name it ``module:Class`` wherever a cell name goes, or register it with ``register_cell``.
"""

import rnnzoo.cells  # noqa: F401  (registers every cell)
from rnnzoo import resolvers
from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.cells.contract import CellContractError, check_cell, check_cell_class
from rnnzoo.registry import (
    cell_aliases,
    cell_label,
    create_cell,
    is_cell,
    list_cells,
    register_cell,
    resolve_name,
)

__all__ = [
    "CellContractError",
    "FusedParams",
    "RecurrentCell",
    "State",
    "cell_aliases",
    "cell_label",
    "check_cell",
    "check_cell_class",
    "create_cell",
    "is_cell",
    "list_cells",
    "register_cell",
    "resolve_name",
]
__version__ = "0.1.0"

resolvers.register()
