"""LSTM with a forget gate, in torch.nn.LSTM's exact formulation and parameter layout.

Papers: Hochreiter & Schmidhuber 1997, "Long Short-Term Memory",
https://doi.org/10.1162/neco.1997.9.8.1735; the forget gate: Gers, Schmidhuber & Cummins 2000,
"Learning to Forget: Continual Prediction with LSTM", https://doi.org/10.1162/089976600300015015.

Equations as implemented (sigma = logistic sigmoid, * = element-wise):

    i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    g_t = tanh (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)                        output y_t = h_t, state (h_t, c_t)

Fused layout (torch's): gates stacked in the order i, f, g, o along dim 0 of
``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` (4H,), ``bias_hh`` (4H,).
``input_projection`` = x W_ih^T + (b_ih + b_hh), (T, B, 4H); ``step`` adds (h * mask) W_hh^T.

Init: every weight U(-1/sqrt(H), 1/sqrt(H)) (torch's default); biases zero except the forget
gate, whose EFFECTIVE bias b_if + b_hf equals ``forget_bias`` (all of it is put in b_if,
b_hf = 0), so the cell starts out remembering (Gers et al. 2000; Jozefowicz et al. 2015).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State, gate_blocks
from rnnzoo.cells.init import uniform_fan_
from rnnzoo.registry import register_cell


def lstm_gates(
    gates: Tensor, c: Tensor, observe: Callable[..., None] | None = None
) -> tuple[Tensor, Tensor]:
    """The element-wise LSTM update from pre-activations (B, 4H) in order i, f, g, o;
    ``observe`` (the cell's) receives the gates i, f, o."""
    act = gates.sigmoid()  # (B, 4H); one op for all gates, the g slice is recomputed below
    i, f, _, o = act.chunk(4, dim=1)
    if observe is not None:
        observe(i=i, f=f, o=o)
    g = gates.chunk(4, dim=1)[2].tanh()  # (B, H)
    c = torch.addcmul(f * c, i, g)  # (B, H)
    return o * c.tanh(), c


def add_lstm_parameters(cell: RecurrentCell, forget_bias: float) -> None:
    """Register the fused LSTM weights (gate order i, f, g, o) on ``cell``; shared by the
    ``lstm`` and ``peephole`` cells."""
    n_in, H = cell.input_size, cell.hidden_size
    cell.forget_bias = float(forget_bias)
    cell.weight_ih = nn.Parameter(torch.empty(4 * H, n_in))
    cell.weight_hh = nn.Parameter(torch.empty(4 * H, H))
    cell.bias_ih = nn.Parameter(torch.empty(4 * H))
    cell.bias_hh = nn.Parameter(torch.empty(4 * H))


@torch.no_grad()
def reset_lstm_parameters(cell: RecurrentCell, *extra: Tensor) -> None:
    """U(-1/sqrt(H), 1/sqrt(H)) weights (and ``extra``), zero biases except the effective
    forget bias b_if + b_hf = forget_bias (all in b_if)."""
    H = cell.hidden_size
    uniform_fan_(cell.weight_ih, cell.weight_hh, *extra, hidden_size=H)
    cell.bias_ih.zero_()
    cell.bias_hh.zero_()
    cell.bias_ih[H : 2 * H] = cell.forget_bias  # f gate; b_hf stays 0


@register_cell("lstm")
class LSTMCell(RecurrentCell):
    """LSTM cell (torch.nn.LSTMCell equations and parameters).

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t and c_t.
        forget_bias: initial effective forget-gate bias b_if + b_hf.
    """

    state_names = ("h", "c")
    native_mode = "LSTM"
    fused_kernel = "lstm"

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        add_lstm_parameters(self, forget_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_lstm_parameters(self)

    def fused_params(self) -> FusedParams:
        bias = self.bias_ih + self.bias_hh  # torch.nn layout: both biases fold into the input
        return FusedParams("lstm", self.weight_ih, bias, self.weight_hh, None)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return gate_blocks(self.weight_hh, "ifgo")

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, 4H) = x W_ih^T + b_ih + b_hh."""
        return F.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        h, c = state  # (B, H) each
        h_rec = h if rec_mask is None else h * rec_mask
        gates = torch.addmm(xp_t, h_rec, self.weight_hh.t())  # (B, 4H)
        h, c = lstm_gates(gates, c, self.observe)
        return h, (h, c)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, forget_bias={self.forget_bias}"
