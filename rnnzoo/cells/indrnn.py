"""IndRNN: independently recurrent neurons, each with one scalar recurrent weight.

Paper: Li, Li, Cook, Zhu & Gao 2018, "Independently Recurrent Neural Network (IndRNN):
Building A Longer and Deeper RNN", https://arxiv.org/abs/1803.04831.

Equations as implemented (* = element-wise, u a vector (H,)):

    h_t = relu(W x_t + b + u * h_{t-1})          output y_t = h_t, state (h_t,)

Layout: ``weight_ih`` W (H, I), ``weight_hh`` u (H,) (a VECTOR, not a matrix), ``bias`` b (H,).
``input_projection`` = x W^T + b, (T, B, H); ``step`` adds u * (h * mask) and applies relu.

Range of u (the paper's gradient argument, Sec. 3): over T steps a relu unit's gradient
scales like u^T, so |u| <= MAX^(1/T) keeps it from exploding past MAX, and
|u| >= MIN^(1/T) keeps it from vanishing below MIN. Here:

- ``recurrent_max_abs`` defaults to 2^(1/seq_len) (``seq_len`` defaults to 784, pixel MNIST);
  ``recurrent_min_abs`` defaults to 0.
- Init: u ~ U(recurrent_min_abs, recurrent_max_abs) (all non-negative, as in the paper's
  experiments); W ~ N(0, input_std^2) with ``input_std`` = 0.001 (small input weights as in
  the IRNN; pass None for torch's U(-1/sqrt(H), 1/sqrt(H))); b = 0.
- ``constrain_()`` clamps |u| into [recurrent_min_abs, recurrent_max_abs] keeping the sign
  (zeros count as positive). The trainer calls ``post_step_()`` after every optimizer step,
  which calls ``constrain_()`` when ``constrain_recurrent`` is true (the default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.cells.init import uniform_fan_
from rnnzoo.registry import register_cell


@register_cell("indrnn")
class IndRNNCell(RecurrentCell):
    """IndRNN cell with relu and an element-wise recurrent weight.

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        seq_len: sequence length T used for the default ``recurrent_max_abs``; None = 784
            (pixel MNIST). The model fills it from the data when the config leaves it null.
        recurrent_max_abs: upper bound of |u|; None gives 2 ** (1 / seq_len).
        recurrent_min_abs: lower bound of |u|.
        constrain_recurrent: clamp u into the bounds after every optimizer step.
        input_std: std of a normal W; None gives U(-1/sqrt(H), 1/sqrt(H)).
    """

    fused_kernel = "indrnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        seq_len: int | None = None,
        recurrent_max_abs: float | None = None,
        recurrent_min_abs: float = 0.0,
        constrain_recurrent: bool = True,
        input_std: float | None = 0.001,
    ) -> None:
        super().__init__(input_size, hidden_size)
        seq_len = 784 if seq_len is None else seq_len
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        max_abs = 2.0 ** (1.0 / seq_len) if recurrent_max_abs is None else recurrent_max_abs
        if not 0.0 <= recurrent_min_abs <= max_abs:
            raise ValueError(
                "need 0 <= recurrent_min_abs <= recurrent_max_abs, got "
                f"{recurrent_min_abs} and {max_abs}"
            )
        self.seq_len = int(seq_len)
        self.recurrent_max_abs = float(max_abs)
        self.recurrent_min_abs = float(recurrent_min_abs)
        self.constrain_recurrent = bool(constrain_recurrent)
        self.input_std = None if input_std is None else float(input_std)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.uniform_(self.weight_hh, self.recurrent_min_abs, self.recurrent_max_abs)
        if self.input_std is None:
            uniform_fan_(self.weight_ih, hidden_size=self.hidden_size)
        else:
            nn.init.normal_(self.weight_ih, 0.0, self.input_std)
        self.bias.zero_()

    @torch.no_grad()
    def constrain_(self) -> None:
        """Clamp |u| into [recurrent_min_abs, recurrent_max_abs] in place, keeping signs."""
        u = self.weight_hh
        sign = torch.where(u < 0, -1.0, 1.0).to(u.dtype)
        u.copy_(sign * u.abs().clamp(self.recurrent_min_abs, self.recurrent_max_abs))

    def post_step_(self) -> None:
        """After every optimizer step: keep u in its range (see ``constrain_recurrent``)."""
        if self.constrain_recurrent:
            self.constrain_()

    def fused_params(self) -> FusedParams:
        # u is element-wise: no recurrent GEMM, it travels as the family's extra parameters
        return FusedParams("indrnn", self.weight_ih, self.bias, None, self.weight_hh)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return {"u": self.weight_hh}  # the diagonal of the recurrent matrix

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, H) = x W^T + b."""
        return F.linear(x, self.weight_ih, self.bias)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h_rec = h if rec_mask is None else h * rec_mask
        h = torch.addcmul(xp_t, h_rec, self.weight_hh).relu()  # (B, H)
        return h, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, recurrent_abs=[{self.recurrent_min_abs}, "
            f"{self.recurrent_max_abs:.6g}], constrain_recurrent={self.constrain_recurrent}"
        )
