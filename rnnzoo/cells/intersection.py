"""Intersection RNN (+RNN): separate output and state paths, each gated, the output with a
highway-style skip of the input.

Paper: Collins, Sohl-Dickstein & Sussillo 2016/2017, "Capacity and Trainability in Recurrent
Neural Networks", https://arxiv.org/abs/1611.09913. Registered as ``intersection`` with the
alias ``rnn+``.

Equations as implemented (sigma = logistic sigmoid, * = element-wise):

    y_in = tanh (W_yx x_t + W_yh h_{t-1} + b_y)        width I
    h_in = tanh (W_hx x_t + W_hh h_{t-1} + b_h)        width H
    g_y  = sigma(W_gyx x_t + W_gyh h_{t-1} + b_gy)     width I
    g_h  = sigma(W_ghx x_t + W_ghh h_{t-1} + b_gh)     width H
    y_t  = g_y * x_t + (1 - g_y) * y_in                output, width I
    h_t  = g_h * h_{t-1} + (1 - g_h) * h_in            state (h_t,), width H

The output y_t has the INPUT's width: ``output_size`` = input_size. On pixel MNIST (I = 1) that
would leave a 1-wide output, so the model puts a linear map I -> H in front of this cell when
I != H; the cell then runs with input_size = hidden_size and stacked layers carry H features.

Fused layout: blocks in the order g_y (I), g_h (H), y_in (I), h_in (H) along dim 0 of
``weight_ih`` (G, I), ``weight_hh`` (G, H) and ``bias`` (G,), G = 2I + 2H (sigmoid blocks
first, then tanh blocks, so each nonlinearity is one op on a contiguous slice).
``input_projection`` = [x W_ih^T + b, x], (T, B, G + I): the input itself rides along as the
last I columns for the g_y * x_t term. ``step`` adds (h * mask) W_hh^T to the first G columns;
the carried g_h * h_{t-1} uses the unmasked h.

Init: weights U(-1/sqrt(H), 1/sqrt(H)); b_y = b_h = 0, b_gh = ``gate_bias`` (default 1.0: start
out carrying h), b_gy = ``skip_bias`` (default 0.0). The paper does not fix these values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.cells.init import uniform_fan_
from rnnzoo.registry import register_cell


@register_cell("intersection", aliases=("rnn+",))
class IntersectionCell(RecurrentCell):
    """Intersection RNN (+RNN) cell; ``y_t`` is input_size wide, ``h_t`` hidden_size wide.

    Args:
        input_size: I, width of x_t and of the output y_t.
        hidden_size: H, width of h_t.
        gate_bias: initial bias b_gh of the state gate g_h.
        skip_bias: initial bias b_gy of the output (skip) gate g_y.
    """

    fused_kernel = "intersection"
    output_is_h = False  # y_t is the carry (input width), not h

    def __init__(
        self, input_size: int, hidden_size: int, gate_bias: float = 1.0, skip_bias: float = 0.0
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.gate_bias = float(gate_bias)
        self.skip_bias = float(skip_bias)
        G = 2 * input_size + 2 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size))
        self.bias = nn.Parameter(torch.empty(G))
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        """y_t has the input's width."""
        return self.input_size

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nx, nh = self.input_size, self.hidden_size  # I, H
        uniform_fan_(self.weight_ih, self.weight_hh, hidden_size=nh)
        self.bias.zero_()
        self.bias[:nx] = self.skip_bias  # g_y
        self.bias[nx : nx + nh] = self.gate_bias  # g_h

    def fused_params(self) -> FusedParams:
        return FusedParams("intersection", self.weight_ih, self.bias, self.weight_hh, None)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        # only the state path's square blocks (g_h, h_in); the output blocks are (I, H)
        n_in, H = self.input_size, self.hidden_size
        return {"W_gh": self.weight_hh[n_in : n_in + H], "W_hh": self.weight_hh[2 * n_in + H :]}

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, 2I + 2H + I) = [x W_ih^T + b, x]."""
        return torch.cat([F.linear(x, self.weight_ih, self.bias), x], dim=-1)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        nx, nh = self.input_size, self.hidden_size  # I, H
        G = 2 * nx + 2 * nh
        h_rec = h if rec_mask is None else h * rec_mask
        pre = torch.addmm(xp_t[:, :G], h_rec, self.weight_hh.t())  # (B, G)
        g_y, g_h = pre[:, : nx + nh].sigmoid().split((nx, nh), dim=1)
        self.observe(g_y=g_y, g_h=g_h)
        y_in, h_in = pre[:, nx + nh :].tanh().split((nx, nh), dim=1)
        y = y_in + g_y * (xp_t[:, G:] - y_in)  # g_y * x + (1 - g_y) * y_in, (B, I)
        h = h_in + g_h * (h - h_in)  # g_h * h + (1 - g_h) * h_in, (B, H); no lerp (autocast dtypes)
        return y, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, gate_bias={self.gate_bias}, "
            f"skip_bias={self.skip_bias}"
        )
