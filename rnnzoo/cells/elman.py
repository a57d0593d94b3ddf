"""Elman RNN: ``rnn`` (tanh, orthogonal recurrent init) and ``irnn`` (ReLU, identity init).

Papers: Elman 1990, "Finding Structure in Time", https://doi.org/10.1207/s15516709cog1402_1;
orthogonal init: Saxe, McClelland & Ganguli 2013, https://arxiv.org/abs/1312.6120;
IRNN: Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent Networks of Rectified
Linear Units", https://arxiv.org/abs/1504.00941.

Equations as implemented (torch.nn.RNNCell's):

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)    act = tanh (rnn) or relu (irnn)
                                                         output y_t = h_t, state (h_t,)

Layout: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih`` (H,), ``bias_hh`` (H,);
``input_projection`` = x W_ih^T + (b_ih + b_hh), (T, B, H); ``step`` adds (h * mask) W_hh^T and
applies ``act``. The fused kernel is "elman_tanh" or "elman_relu" (torch.nn layout, both
biases folded).

Both registered names are one class with different keyword defaults (variants are keyword
arguments, not classes):

- ``rnn``: W_hh orthogonal (times ``recurrent_gain``), W_ih U(-1/sqrt(H), 1/sqrt(H)) (torch's
  default), biases zero.
- ``irnn``: W_hh = ``recurrent_gain`` * identity, W_ih ~ N(0, 0.001^2) (std 0.001), biases zero,
  as in Le et al. (the paper's "scaled identity" variant is ``recurrent_gain`` < 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.cells.init import RECURRENT_INITS, recurrent_init_, uniform_fan_
from rnnzoo.registry import register_cell

_NATIVE_MODES = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}


class ElmanCell(RecurrentCell):
    """Elman RNN cell (torch.nn.RNNCell equations and parameters).

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        nonlinearity: "tanh" or "relu".
        recurrent_init: "orthogonal", "identity" or "uniform" (torch's default) for W_hh.
        recurrent_gain: scale of the orthogonal / identity W_hh.
        input_std: std of a normal W_ih; None gives U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        recurrent_init: str = "orthogonal",
        recurrent_gain: float = 1.0,
        input_std: float | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if nonlinearity not in _NATIVE_MODES:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; valid: tanh, relu")
        if recurrent_init not in RECURRENT_INITS:
            valid = ", ".join(RECURRENT_INITS)
            raise ValueError(f"unknown recurrent_init {recurrent_init!r}; valid: {valid}")
        self.nonlinearity = nonlinearity
        self.recurrent_init = recurrent_init
        self.recurrent_gain = float(recurrent_gain)
        self.input_std = None if input_std is None else float(input_std)
        self._act = torch.tanh if nonlinearity == "tanh" else torch.relu
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    @property
    def native_mode(self) -> str:  # type: ignore[override]
        """ "RNN_TANH" or "RNN_RELU": the cell is exactly torch.nn.RNN with that nonlinearity."""
        return _NATIVE_MODES[self.nonlinearity]

    @property
    def fused_kernel(self) -> str:  # type: ignore[override]
        """ "elman_tanh" or "elman_relu"."""
        return f"elman_{self.nonlinearity}"

    def fused_params(self) -> FusedParams:
        bias = self.bias_ih + self.bias_hh  # torch.nn layout: both biases fold into the input
        return FusedParams(self.fused_kernel, self.weight_ih, bias, self.weight_hh, None)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return {"W_hh": self.weight_hh}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        H = self.hidden_size
        recurrent_init_(self.weight_hh, self.recurrent_init, self.recurrent_gain, H)
        if self.input_std is None:
            uniform_fan_(self.weight_ih, hidden_size=H)
        else:
            nn.init.normal_(self.weight_ih, 0.0, self.input_std)
        self.bias_ih.zero_()
        self.bias_hh.zero_()

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, H) = x W_ih^T + b_ih + b_hh."""
        return F.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h_rec = h if rec_mask is None else h * rec_mask
        h = self._act(torch.addmm(xp_t, h_rec, self.weight_hh.t()))  # (B, H)
        return h, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity}, "
            f"recurrent_init={self.recurrent_init}, recurrent_gain={self.recurrent_gain}, "
            f"input_std={self.input_std}"
        )


@register_cell("rnn")
def rnn(
    input_size: int,
    hidden_size: int,
    recurrent_init: str = "orthogonal",
    recurrent_gain: float = 1.0,
    input_std: float | None = None,
) -> ElmanCell:
    """tanh Elman RNN with an orthogonal recurrent matrix."""
    return ElmanCell(
        input_size, hidden_size, "tanh", recurrent_init, recurrent_gain, input_std=input_std
    )


@register_cell("irnn")
def irnn(
    input_size: int,
    hidden_size: int,
    recurrent_init: str = "identity",
    recurrent_gain: float = 1.0,
    input_std: float | None = 0.001,
) -> ElmanCell:
    """IRNN (Le et al. 2015): ReLU Elman RNN, identity recurrent matrix, tiny input weights."""
    return ElmanCell(
        input_size, hidden_size, "relu", recurrent_init, recurrent_gain, input_std=input_std
    )
