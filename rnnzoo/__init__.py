"""rnnzoo: benchmark recurrent cells on Sequential MNIST and its relatives."""

import rnnzoo.cells  # noqa: F401  (registers every cell)
from rnnzoo import resolvers
from rnnzoo.registry import cell_aliases, create_cell, is_cell, list_cells, register_cell

__all__ = ["cell_aliases", "create_cell", "is_cell", "list_cells", "register_cell"]
__version__ = "0.1.0"

resolvers.register()
