"""GRU in torch.nn.GRU's exact formulation and parameter layout.

Paper: Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder for
Statistical Machine Translation", https://arxiv.org/abs/1406.1078. torch (like cuDNN) applies
the reset gate AFTER the recurrent matrix product: r * (W_hn h + b_hn); Cho et al. apply it
before: W_hn (r * h). We follow torch so the native engine is exact.

Equations as implemented (sigma = logistic sigmoid, * = element-wise):

    r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh (W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}          output y_t = h_t, state (h_t,)

Fused layout (torch's): gates stacked in the order r, z, n along dim 0 of ``weight_ih``
(3H, I), ``weight_hh`` (3H, H), ``bias_ih`` (3H,), ``bias_hh`` (3H,).
``input_projection`` = x W_ih^T + b_ih + [b_hr, b_hz, 0], (T, B, 3H): b_hn sits inside the
reset-gate product, so it cannot be folded into the input projection; ``step`` adds it.
With recurrent dropout, only the product sees the mask: W_h (h * mask); the carried
z_t * h_{t-1} uses the unmasked h.

Init: every weight U(-1/sqrt(H), 1/sqrt(H)) (torch's default), biases zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State, gate_blocks
from rnnzoo.cells.init import uniform_fan_
from rnnzoo.registry import register_cell


@register_cell("gru")
class GRUCell(RecurrentCell):
    """GRU cell (torch.nn.GRUCell equations and parameters).

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
    """

    native_mode = "GRU"
    fused_kernel = "gru"

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        uniform_fan_(self.weight_ih, self.weight_hh, hidden_size=self.hidden_size)
        self.bias_ih.zero_()
        self.bias_hh.zero_()

    def fused_params(self) -> FusedParams:
        # b_hr, b_hz fold into the input side; b_hn sits inside r * (W_hn h + b_hn): extra
        H = self.hidden_size
        b_hh = self.bias_hh
        bias = self.bias_ih + torch.cat([b_hh[: 2 * H], b_hh.new_zeros(H)])  # (3H,)
        return FusedParams("gru", self.weight_ih, bias, self.weight_hh, b_hh[2 * H :])

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return gate_blocks(self.weight_hh, "rzn")

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, 3H) = x W_ih^T + b_ih + [b_hr, b_hz, 0]."""
        H = self.hidden_size
        b_hrz = self.bias_hh[: 2 * H]
        bias = self.bias_ih + torch.cat([b_hrz, b_hrz.new_zeros(H)])  # (3H,)
        return F.linear(x, self.weight_ih, bias)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        H = self.hidden_size
        h_rec = h if rec_mask is None else h * rec_mask
        hh = torch.mm(h_rec, self.weight_hh.t())  # (B, 3H)
        r, z = (xp_t[:, : 2 * H] + hh[:, : 2 * H]).sigmoid().chunk(2, dim=1)  # (B, H) each
        self.observe(r=r, z=z)
        n = torch.addcmul(xp_t[:, 2 * H :], r, hh[:, 2 * H :] + self.bias_hh[2 * H :]).tanh()
        h = n + z * (h - n)  # = (1 - z) * n + z * h (lerp rejects autocast mixed dtypes)
        return h, (h,)
