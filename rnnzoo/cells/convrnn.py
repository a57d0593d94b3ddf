"""ConvRNN: a tanh RNN whose input-to-state and state-to-state maps are 1-D convolutions
over the width of an image row (the row view: one 28-pixel row per step).

Paper: Shi, Chen, Wang, Yeung, Wong & Woo 2015, "Convolutional LSTM Network: A Machine
Learning Approach for Precipitation Nowcasting", https://arxiv.org/abs/1506.04214 (the
convolutional recurrence; this is its plain tanh form, the ``convlstm`` cell the gated one).

Equations as implemented (* = 1-D cross-correlation over the width, stride 1, "same"
padding, so both convolutions produce the state's shape (C, W)):

    H_t = tanh(K_x * X_t + K_h * (H_{t-1} . mask) + b)     output y_t = H_t, state (H_t,)

X_t (C_in, W) is the step's input (C_in = 1 on the row view: one row of W = 28 pixels),
H_t (C, W) is ``channels`` feature maps, b (C,) is one bias per channel, broadcast over the
width. "Same" padding: k is odd, (k - 1) / 2 zeros on each side (torch's ``padding="same"``).

Layout: the state and the step's input are flattened channel-major, h (B, C*W) and x_t
(B, C_in*W), so hidden_size = C * W and the next layer's (or the other direction's) output
is simply more input channels. ``weight_ih`` K_x (C, C_in, k), ``weight_hh`` K_h (C, C, k),
``bias`` b (C,). ``input_projection`` convolves all T*B rows at once, (T, B, C*W); ``step``
adds K_h * (h . mask) (F.conv1d: the ``loop`` engine is the reference).

Fused: the existing "elman_tanh" kernel family runs this cell unchanged. ``fused_params``
passes the kernels compact, K_x (C, C_in*k) and K_h (C, C*k), with ``conv_width`` = W, and
the drivers compute both maps of a step as ONE convolution over the C_in + C maps [X_t ;
H_{t-1} . mask] (``rnnzoo/engines/csrc/conv.h``: computed directly, batch rows in the
vector lanes (8 float32 on AVX2) of register tiles, for the product and in backward for
the maps' and the kernel's gradients; no im2col, no GEMM), not as products with the dense
banded (Toeplitz) matrices (``conv_matrix``, (C*W, C*W) for K_h), which cost W / k times
the multiply-adds (5.6x at W = 28, k = 5). The bias is repeated over the width.

Init: as torch.nn.Conv1d, K ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = channels in *
k; b = 0.

On the pixel view (1 input per step) the cell refuses: the input must be rows of ``width``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.errors import UserError
from rnnzoo.registry import register_cell


def row_channels(
    name: str, input_size: int, hidden_size: int, width: int, channels: int | None
) -> tuple[int, int]:
    """(input channels, state channels) of a convolutional cell on rows of ``width``.

    Raises:
        UserError: the input is not rows of ``width`` (e.g. the pixel view), or hidden_size
            is not ``channels`` maps of ``width``.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if input_size % width:
        raise UserError(
            f"cell {name!r} reads one image row per step: the input must be rows of "
            f"width={width} (got input_size={input_size}); use data.view=row"
        )
    if channels is None:
        channels = hidden_size // width
    if channels < 1 or hidden_size != channels * width:
        raise UserError(
            f"cell {name!r}: hidden_size must be channels x width = {max(channels, 1)} x "
            f"{width} = {max(channels, 1) * width}, got {hidden_size}; set model.hidden_size "
            f"to a multiple of {width}"
        )
    return input_size // width, channels


def conv_matrix(kernel: Tensor, width: int) -> Tensor:
    """The banded matrix M (O*W, C*W) with M @ x.flatten() = conv1d(x, kernel, "same") for
    x (C, W) flattened channel-major; kernel (O, C, k). Differentiable in ``kernel``.

    M[(o, w), (c, v)] = kernel[o, c, v - w + left] where 0 <= v - w + left < k and
    left = (k - 1) // 2 (torch's "same" padding)."""
    n_out, C, k = kernel.shape
    left = (k - 1) // 2
    shifts = torch.zeros(k, width, width, dtype=kernel.dtype, device=kernel.device)
    for j in range(k):  # shifts[j, w, v] = 1 where v = w + j - left
        s = j - left
        if abs(s) < width:
            shifts[j].diagonal(s).fill_(1.0)
    return torch.einsum("ocj,jwv->owcv", kernel, shifts).reshape(n_out * width, C * width)


def conv_rows(x: Tensor, kernel: Tensor, bias: Tensor | None, width: int) -> Tensor:
    """F.conv1d with "same" padding on flattened rows: (..., C*W) -> (..., O*W)."""
    lead = x.shape[:-1]
    out = F.conv1d(x.reshape(-1, x.shape[-1] // width, width), kernel, bias, padding="same")
    return out.reshape(*lead, -1)


def conv_init_(kernel: Tensor) -> None:
    """torch.nn.Conv1d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C * k."""
    bound = 1.0 / math.sqrt(kernel.shape[1] * kernel.shape[2])
    nn.init.uniform_(kernel, -bound, bound)


@register_cell("convrnn")
class ConvRNNCell(RecurrentCell):
    """tanh RNN with 1-D convolutional input and recurrent maps over image rows.

    Args:
        input_size: C_in * width (28 on the row view).
        hidden_size: channels * width.
        channels: C, feature maps of the state; None = hidden_size // width.
        kernel_size: k of both convolutions, odd.
        width: W, pixels per row.
    """

    fused_kernel = "elman_tanh"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        channels: int | None = None,
        kernel_size: int = 5,
        width: int = 28,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd ('same' padding), got {kernel_size}")
        self.in_channels, self.channels = row_channels(
            "convrnn", input_size, hidden_size, width, channels
        )
        self.kernel_size = int(kernel_size)
        self.width = int(width)
        self.state_shape = (self.channels, self.width)  # h is C maps of width W
        C, k = self.channels, self.kernel_size
        self.weight_ih = nn.Parameter(torch.empty(C, self.in_channels, k))
        self.weight_hh = nn.Parameter(torch.empty(C, C, k))
        self.bias = nn.Parameter(torch.empty(C))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        conv_init_(self.weight_ih)
        conv_init_(self.weight_hh)
        self.bias.zero_()

    def fused_params(self) -> FusedParams:
        W = self.width
        w_ih = self.weight_ih.flatten(1)  # (C, C_in*k): kernels convolved over the width
        w_hh = self.weight_hh.flatten(1)  # (C, C*k)
        bias = self.bias.repeat_interleave(W)  # (C*W,)
        return FusedParams("elman_tanh", w_ih, bias, w_hh, None, conv_width=W)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return {"W_hh": conv_matrix(self.weight_hh, self.width)}

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, C_in*W) -> (T, B, C*W) = K_x * x + b, every row at once."""
        return conv_rows(x, self.weight_ih, self.bias, self.width)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, C*W)
        h_rec = h if rec_mask is None else h * rec_mask
        h = (xp_t + conv_rows(h_rec, self.weight_hh, None, self.width)).tanh()
        return h, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, channels={self.in_channels}->"
            f"{self.channels}, kernel_size={self.kernel_size}, width={self.width}"
        )
