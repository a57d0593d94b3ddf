"""Peephole LSTM: the gates also look at the cell state, through diagonal (element-wise)
peephole weights.

Paper: Gers & Schmidhuber 2000, "Recurrent Nets that Time and Count", IJCNN,
https://doi.org/10.1109/IJCNN.2000.861302 (also Gers, Schraudolph & Schmidhuber 2002,
"Learning Precise Timing with LSTM Recurrent Networks", JMLR 3:115-143).

Equations as implemented (sigma = logistic sigmoid, * = element-wise, p_* vectors (H,)):

    i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi + p_i * c_{t-1})
    f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf + p_f * c_{t-1})
    g_t = tanh (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    c_t = f_t * c_{t-1} + i_t * g_t
    o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho + p_o * c_t)
    h_t = o_t * tanh(c_t)                        output y_t = h_t, state (h_t, c_t)

i and f peek at the previous cell state c_{t-1}; o peeks at the NEW cell state c_t, as in the
paper. The output keeps the standard LSTM squashing tanh(c_t). Recurrent dropout masks h in
the W_h product only, never c in the peepholes.

Fused layout: like the ``lstm`` cell (gates i, f, g, o along dim 0 of ``weight_ih`` (4H, I),
``weight_hh`` (4H, H), ``bias_ih`` (4H,), ``bias_hh`` (4H,)), plus ``weight_ch`` (3H,) holding
the peepholes in the order p_i, p_f, p_o. ``input_projection`` = x W_ih^T + (b_ih + b_hh),
(T, B, 4H). With ``weight_ch`` = 0 the cell is exactly the ``lstm`` cell.

Init: weights and peepholes U(-1/sqrt(H), 1/sqrt(H)); biases zero except the effective forget
bias b_if + b_hf = ``forget_bias`` (all in b_if), as in the ``lstm`` cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State, gate_blocks
from rnnzoo.cells.lstm import add_lstm_parameters, reset_lstm_parameters
from rnnzoo.registry import register_cell


@register_cell("peephole", aliases=("peephole_lstm",))
class PeepholeLSTMCell(RecurrentCell):
    """LSTM with diagonal peephole connections (i, f see c_{t-1}; o sees c_t).

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t and c_t.
        forget_bias: initial effective forget-gate bias b_if + b_hf.
    """

    state_names = ("h", "c")
    fused_kernel = "peephole"

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        add_lstm_parameters(self, forget_bias)
        self.weight_ch = nn.Parameter(torch.empty(3 * hidden_size))  # p_i, p_f, p_o
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_lstm_parameters(self, self.weight_ch)

    def fused_params(self) -> FusedParams:
        bias = self.bias_ih + self.bias_hh
        return FusedParams("peephole", self.weight_ih, bias, self.weight_hh, self.weight_ch)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return gate_blocks(self.weight_hh, "ifgo")

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, 4H) = x W_ih^T + b_ih + b_hh."""
        return F.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        h, c = state  # (B, H) each
        H = self.hidden_size
        h_rec = h if rec_mask is None else h * rec_mask
        gates = torch.addmm(xp_t, h_rec, self.weight_hh.t())  # (B, 4H)
        p_if, p_o = self.weight_ch[: 2 * H], self.weight_ch[2 * H :]
        i, f = torch.addcmul(gates[:, : 2 * H], c.repeat(1, 2), p_if).sigmoid().chunk(2, dim=1)
        g = gates[:, 2 * H : 3 * H].tanh()  # (B, H)
        c = torch.addcmul(f * c, i, g)  # (B, H)
        o = torch.addcmul(gates[:, 3 * H :], c, p_o).sigmoid()  # (B, H)
        self.observe(i=i, f=f, o=o)
        h = o * c.tanh()
        return h, (h, c)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, forget_bias={self.forget_bias}"
