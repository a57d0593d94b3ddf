"""UGRNN: the Update-Gate RNN, a minimal gated cell with one gate.

Paper: Collins, Sohl-Dickstein & Sussillo 2016/2017, "Capacity and Trainability in Recurrent
Neural Networks", https://arxiv.org/abs/1611.09913.

Equations as implemented (sigma = logistic sigmoid, * = element-wise):

    c_t = tanh (W_cx x_t + W_ch h_{t-1} + b_c)
    g_t = sigma(W_gx x_t + W_gh h_{t-1} + b_g)
    h_t = g_t * h_{t-1} + (1 - g_t) * c_t        output y_t = h_t, state (h_t,)

Fused layout: blocks in the order c, g along dim 0 of ``weight_ih`` (2H, I), ``weight_hh``
(2H, H) and ``bias`` (2H,) (one bias: there is no built-in to stay compatible with).
``input_projection`` = x W_ih^T + b, (T, B, 2H); ``step`` adds (h * mask) W_hh^T. The carried
g_t * h_{t-1} uses the unmasked h.

Init: weights U(-1/sqrt(H), 1/sqrt(H)); b_c = 0, b_g = ``gate_bias`` (default 1.0, so the cell
starts out mostly carrying h, like the LSTM forget bias; the paper does not fix a value).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State, gate_blocks
from rnnzoo.cells.init import uniform_fan_
from rnnzoo.registry import register_cell


@register_cell("ugrnn")
class UGRNNCell(RecurrentCell):
    """Update-Gate RNN cell.

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        gate_bias: initial bias b_g of the update gate.
    """

    fused_kernel = "ugrnn"

    def __init__(self, input_size: int, hidden_size: int, gate_bias: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        self.gate_bias = float(gate_bias)
        self.weight_ih = nn.Parameter(torch.empty(2 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(2 * hidden_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        H = self.hidden_size
        uniform_fan_(self.weight_ih, self.weight_hh, hidden_size=H)
        self.bias.zero_()
        self.bias[H:] = self.gate_bias

    def fused_params(self) -> FusedParams:
        return FusedParams("ugrnn", self.weight_ih, self.bias, self.weight_hh, None)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return gate_blocks(self.weight_hh, "cg")

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, 2H) = x W_ih^T + b."""
        return F.linear(x, self.weight_ih, self.bias)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        H = self.hidden_size
        h_rec = h if rec_mask is None else h * rec_mask
        pre = torch.addmm(xp_t, h_rec, self.weight_hh.t())  # (B, 2H)
        c = pre[:, :H].tanh()
        g = pre[:, H:].sigmoid()
        self.observe(g=g)
        h = c + g * (h - c)  # = g * h + (1 - g) * c (lerp rejects autocast mixed dtypes)
        return h, (h,)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, gate_bias={self.gate_bias}"
