"""The recurrent cells, one module per family; importing this package registers them all.

Registered names: rnn, irnn (elman.py), lstm, peephole, gru, indrnn, ugrnn, intersection;
aliases rnn+ -> intersection, peephole_lstm -> peephole.
"""

from rnnzoo.cells.base import RecurrentCell, State
from rnnzoo.cells.elman import ElmanCell
from rnnzoo.cells.gru import GRUCell
from rnnzoo.cells.indrnn import IndRNNCell
from rnnzoo.cells.intersection import IntersectionCell
from rnnzoo.cells.lstm import LSTMCell
from rnnzoo.cells.peephole import PeepholeLSTMCell
from rnnzoo.cells.ugrnn import UGRNNCell

__all__ = [
    "ElmanCell",
    "GRUCell",
    "IndRNNCell",
    "IntersectionCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "RecurrentCell",
    "State",
    "UGRNNCell",
]
