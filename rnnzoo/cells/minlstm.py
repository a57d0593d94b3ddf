"""minLSTM: an LSTM with input-only gates, normalized so that the state's scale is
time-independent, and no output gate or cell/hidden split, so it scans in parallel.

Paper: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?",
https://arxiv.org/abs/2410.01201 (Sec. 3.2 and Appendix B, the log-space version).

Equations as implemented (* = element-wise):

    k_f, k_i, k_h = split(W x_t + b)               one Linear(I, 3H)
    f_t  = sigmoid(k_f),  i_t = sigmoid(k_i)       forget and input gates, from x_t only
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)     (normalized: f' + i' = 1)
    h~_t = g(k_h),  g(v) = v + 0.5 if v >= 0 else sigmoid(v)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t            output y_t = h_t, state (h_t,)

Log space (the paper's Appendix B.3), with d = softplus(-k_f) - softplus(-k_i)
(= log i_t - log f_t):

    log a_t = log f'_t = -softplus(d)
    log b_t = log i'_t + log g(k_h) = -softplus(-d) + log g(k_h)

Initial state: h itself, zero unless given; carried exactly by every engine, also when
negative (see ``rnnzoo.cells.mingru``).

Layout: ``weight_ih`` W (3H, I) rows [f | i | h~], ``bias`` b (3H,). ``input_projection`` =
x W^T + b, (T, B, 3H), with x appended, (T, B, 3H + I), when the output block needs it.
Init: torch.nn.Linear's default (the paper's code uses nn.Linear), U(-1/sqrt(I), 1/sqrt(I)).

Option ``block``: "none" (default; y_t = h_t) or "glu", the output block of
``rnnzoo.cells.linear_recurrence`` (GELU, GLU, residual when I == H, LayerNorm) on h_t.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams
from rnnzoo.cells.linear_recurrence import (
    GLUBlock,
    LinearRecurrenceCell,
    Recurrence,
    check_block,
)
from rnnzoo.cells.mingru import log_g
from rnnzoo.registry import register_cell


@register_cell("minlstm")
class MinLSTMCell(LinearRecurrenceCell):
    """minLSTM cell (log-space version, normalized gates).

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        block: "none" or "glu" (output block on h_t, see the module docstring).
    """

    fused_kernel = "minlstm"

    def __init__(self, input_size: int, hidden_size: int, block: str = "none") -> None:
        super().__init__(input_size, hidden_size)
        self.block_kind = check_block(block)
        self.output_is_h = self.block_kind == "none"
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.bias = nn.Parameter(torch.empty(3 * hidden_size))
        self.block = None
        if self.block_kind == "glu":
            self.block = GLUBlock(hidden_size, residual=input_size == hidden_size)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.input_size)  # nn.Linear's default
        nn.init.uniform_(self.weight_ih, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        if self.block is not None:
            self.block.glu.reset_parameters()
            self.block.norm.reset_parameters()

    def fused_params(self) -> FusedParams:
        # the kernel computes the gates from x W^T + b itself and returns h (the block, if
        # any, runs in output_map)
        return FusedParams("minlstm", self.weight_ih, self.bias, None, None)

    def _keeps_x(self) -> bool:
        return self.block is not None and self.block.residual

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, 3H) = x W^T + b, [k_f | k_i | k_h] (+ x for the block)."""
        xp = F.linear(x, self.weight_ih, self.bias)
        return torch.cat([xp, x], dim=-1) if self._keeps_x() else xp

    def recurrence(self, xp: Tensor) -> Recurrence:
        """log a = log f', log b = log i' + log g(k_h), each (T, B, H)."""
        log_f, log_i = self._log_gates(xp)
        k_h = xp[..., 2 * self.hidden_size : 3 * self.hidden_size]
        return Recurrence(log_f, log_i + log_g(k_h), True)

    def gates(self, xp: Tensor) -> dict[str, Tensor]:
        """The normalized gates f' and i' (B, H each; f' + i' = 1), for diagnostics."""
        log_f, log_i = self._log_gates(xp)
        return {"f": log_f.exp(), "i": log_i.exp()}

    def _log_gates(self, xp: Tensor) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        d = F.softplus(-xp[..., :H]) - F.softplus(-xp[..., H : 2 * H])  # log i - log f
        return -F.softplus(d), -F.softplus(-d)

    def input_of(self, xp: Tensor) -> Tensor | None:
        """x, appended to xp when the block's residual needs it."""
        return xp[..., 3 * self.hidden_size :] if self._keeps_x() else None

    def output_map(self, x: Tensor | None, hs: Tensor) -> Tensor:
        """h_t itself, or the output block on it: (T, B, H)."""
        return hs if self.block is None else self.block(hs, x)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, block={self.block_kind}"
