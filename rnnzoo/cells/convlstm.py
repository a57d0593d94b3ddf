"""ConvLSTM: an LSTM whose input-to-state and state-to-state maps are 1-D convolutions over
the width of an image row (the row view: one 28-pixel row per step).

Paper: Shi, Chen, Wang, Yeung, Wong & Woo 2015, "Convolutional LSTM Network: A Machine
Learning Approach for Precipitation Nowcasting", https://arxiv.org/abs/1506.04214, eq. (3),
with its 2-D convolutions over a frame replaced by 1-D convolutions over a row.

Equations as implemented (* = 1-D cross-correlation over the width, stride 1, "same"
padding; . = element-wise; every map (C, W); b_* one bias per channel, broadcast over W):

    i_t = sigma(K_xi * X_t + K_hi * (H_{t-1} . mask) + P_i . C_{t-1} + b_i)
    f_t = sigma(K_xf * X_t + K_hf * (H_{t-1} . mask) + P_f . C_{t-1} + b_f)
    G_t = tanh (K_xg * X_t + K_hg * (H_{t-1} . mask) + b_g)
    C_t = f_t . C_{t-1} + i_t . G_t
    o_t = sigma(K_xo * X_t + K_ho * (H_{t-1} . mask) + P_o . C_t + b_o)
    H_t = o_t . tanh(C_t)                        output y_t = H_t, state (H_t, C_t)

The peepholes P_i, P_f, P_o (C, W) are the paper's Hadamard products W_c . C (i and f see
C_{t-1}, o sees C_t); ``peephole=False`` drops them (the common ConvLSTM without them).

Layout: maps flattened channel-major, h and c (B, C*W), so hidden_size = C * W (see the
``convrnn`` cell, which shares the helpers). Gates stacked as channel blocks in the order
i, f, g, o: ``weight_ih`` (4C, C_in, k), ``weight_hh`` (4C, C, k), ``bias`` (4C,); the
peepholes ``weight_ch`` (3, C, W) in the order P_i, P_f, P_o. Flattened, the gate blocks are
exactly the ``lstm`` cell's (4H) layout with H = C*W.

Fused: the existing "peephole" family (or "lstm" without peepholes) runs the cell
unchanged. ``fused_params`` passes the kernels compact, (4C, C_in*k) and (4C, C*k), with
``conv_width`` = W: the drivers compute both maps of a step as ONE convolution over [X_t ;
H_{t-1} . mask] (``rnnzoo/engines/csrc/conv.h``: computed directly, batch rows in the
vector lanes (8 float32 on AVX2) of register tiles; no im2col, no GEMM), whose output lands
in the gate layout (gate*C + c)*W + w the family reads; the dense banded (Toeplitz) matrices
(``conv_matrix``, (4C*W, C*W) for K_h) would cost W / k times the multiply-adds. Each
channel's bias is repeated over the width.

Init: kernels as torch.nn.Conv1d (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = channels in
* k); biases 0 except the forget gate's, ``forget_bias`` (as the ``lstm`` cell); peepholes
0 (the cell starts as a ConvLSTM without peepholes and learns them).

On the pixel view (1 input per step) the cell refuses: the input must be rows of ``width``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State, gate_blocks
from rnnzoo.cells.convrnn import conv_init_, conv_matrix, conv_rows, row_channels
from rnnzoo.cells.lstm import lstm_gates
from rnnzoo.registry import register_cell


@register_cell("convlstm")
class ConvLSTMCell(RecurrentCell):
    """LSTM with 1-D convolutional maps over image rows (Shi et al. 2015).

    Args:
        input_size: C_in * width (28 on the row view).
        hidden_size: channels * width.
        channels: C, feature maps of h and c; None = hidden_size // width.
        kernel_size: k of every convolution, odd.
        width: W, pixels per row.
        peephole: the paper's peepholes P_i, P_f, P_o.
        forget_bias: initial forget-gate bias b_f.
    """

    state_names = ("h", "c")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        channels: int | None = None,
        kernel_size: int = 5,
        width: int = 28,
        peephole: bool = True,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd ('same' padding), got {kernel_size}")
        self.in_channels, self.channels = row_channels(
            "convlstm", input_size, hidden_size, width, channels
        )
        self.kernel_size = int(kernel_size)
        self.width = int(width)
        self.state_shape = (self.channels, self.width)  # h and c are C maps of width W
        self.peephole = bool(peephole)
        self.forget_bias = float(forget_bias)
        C, k = self.channels, self.kernel_size
        self.weight_ih = nn.Parameter(torch.empty(4 * C, self.in_channels, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * C, C, k))
        self.bias = nn.Parameter(torch.empty(4 * C))
        self.weight_ch = nn.Parameter(torch.empty(3, C, self.width)) if self.peephole else None
        self.reset_parameters()

    @property
    def fused_kernel(self) -> str:  # type: ignore[override]
        """ "peephole" with the paper's peepholes, else "lstm"."""
        return "peephole" if self.peephole else "lstm"

    @torch.no_grad()
    def reset_parameters(self) -> None:
        C = self.channels
        conv_init_(self.weight_ih)
        conv_init_(self.weight_hh)
        self.bias.zero_()
        self.bias[C : 2 * C] = self.forget_bias
        if self.weight_ch is not None:
            self.weight_ch.zero_()

    def fused_params(self) -> FusedParams:
        W = self.width
        w_ih = self.weight_ih.flatten(1)  # (4C, C_in*k): kernels convolved over the width
        w_hh = self.weight_hh.flatten(1)  # (4C, C*k)
        bias = self.bias.repeat_interleave(W)  # (4C*W,)
        extra = None if self.weight_ch is None else self.weight_ch.reshape(-1)  # (3C*W,)
        return FusedParams(self.fused_kernel, w_ih, bias, w_hh, extra, conv_width=W)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return gate_blocks(conv_matrix(self.weight_hh, self.width), "ifgo")

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, C_in*W) -> (T, B, 4C*W) = K_x * x + b, every row at once."""
        return conv_rows(x, self.weight_ih, self.bias, self.width)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        h, c = state  # (B, C*W) each
        h_rec = h if rec_mask is None else h * rec_mask
        gates = xp_t + conv_rows(h_rec, self.weight_hh, None, self.width)  # (B, 4C*W)
        if self.weight_ch is None:
            h, c = lstm_gates(gates, c, self.observe)
            return h, (h, c)
        p_i, p_f, p_o = self.weight_ch.reshape(3, -1).unbind(0)  # (C*W,) each
        gi, gf, gg, go = gates.chunk(4, dim=1)
        i = torch.addcmul(gi, c, p_i).sigmoid()
        f = torch.addcmul(gf, c, p_f).sigmoid()
        c = torch.addcmul(f * c, i, gg.tanh())
        o = torch.addcmul(go, c, p_o).sigmoid()
        self.observe(i=i, f=f, o=o)
        h = o * c.tanh()
        return h, (h, c)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, channels={self.in_channels}->"
            f"{self.channels}, kernel_size={self.kernel_size}, width={self.width}, "
            f"peephole={self.peephole}, forget_bias={self.forget_bias}"
        )
