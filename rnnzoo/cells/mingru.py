"""minGRU: a GRU whose gate and candidate see the input only, so it scans in parallel.

Paper: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?",
https://arxiv.org/abs/2410.01201 (Sec. 3.1 and Appendix B, the log-space version).

Equations as implemented (* = element-wise):

    k_z, k_h = split(W x_t + b)                     one Linear(I, 2H)
    z_t   = sigmoid(k_z)                            update gate, from x_t only
    h~_t  = g(k_h),  g(v) = v + 0.5 if v >= 0 else sigmoid(v)    (> 0, continuous)
    h_t   = (1 - z_t) * h_{t-1} + z_t * h~_t        output y_t = h_t, state (h_t,)

The paper's log-space version (the one it trains, Appendix B.3) replaces the candidate's
identity with g so that h stays positive and the scan can run on logs:

    log a_t = log(1 - z_t) = -softplus(k_z)
    log b_t = log z_t + log h~_t = -softplus(-k_z) + log g(k_h),
    log g(v) = log(v + 0.5) if v >= 0 else -softplus(-v)

Initial state: the state is h itself, zero unless given (``learn_init`` learns it); the
``scan`` engine carries a given h_0 exactly, also a negative one (the paper feeds log g(h_0)
to its scan; here h_0 is not squashed, so the loop, the scan and the fused kernel agree on
any state, which truncated BPTT carries between chunks).

Layout: ``weight_ih`` W (2H, I) rows [z | h~], ``bias`` b (2H,). ``input_projection`` =
x W^T + b, (T, B, 2H), with x itself appended, (T, B, 2H + I), when the output block needs
it for its residual connection. Init: torch.nn.Linear's default (the paper's code uses
nn.Linear), U(-1/sqrt(I), 1/sqrt(I)) for W and b.

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
from rnnzoo.registry import register_cell


def g(v: Tensor) -> Tensor:
    """The paper's positive, continuous activation: v + 0.5 for v >= 0, sigmoid(v) below."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_g(v: Tensor) -> Tensor:
    """log g(v), computed without forming g (no log of a tiny sigmoid)."""
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


@register_cell("mingru")
class MinGRUCell(LinearRecurrenceCell):
    """minGRU cell (log-space version).

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        block: "none" or "glu" (output block on h_t, see the module docstring).
    """

    fused_kernel = "mingru"

    def __init__(self, input_size: int, hidden_size: int, block: str = "none") -> None:
        super().__init__(input_size, hidden_size)
        self.block_kind = check_block(block)
        self.output_is_h = self.block_kind == "none"
        self.weight_ih = nn.Parameter(torch.empty(2 * hidden_size, input_size))
        self.bias = nn.Parameter(torch.empty(2 * hidden_size))
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
        return FusedParams("mingru", self.weight_ih, self.bias, None, None)

    def _keeps_x(self) -> bool:
        return self.block is not None and self.block.residual

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, 2H) = x W^T + b, [k_z | k_h] (+ x when the block needs it)."""
        xp = F.linear(x, self.weight_ih, self.bias)
        return torch.cat([xp, x], dim=-1) if self._keeps_x() else xp

    def recurrence(self, xp: Tensor) -> Recurrence:
        """log a = log(1 - z), log b = log z + log g(k_h), each (T, B, H)."""
        H = self.hidden_size
        k_z, k_h = xp[..., :H], xp[..., H : 2 * H]
        return Recurrence(-F.softplus(k_z), -F.softplus(-k_z) + log_g(k_h), True)

    def gates(self, xp: Tensor) -> dict[str, Tensor]:
        """The update gate z (B, H), for diagnostics."""
        return {"z": torch.sigmoid(xp[..., : self.hidden_size])}

    def input_of(self, xp: Tensor) -> Tensor | None:
        """x, appended to xp when the block's residual needs it."""
        return xp[..., 2 * self.hidden_size :] if self._keeps_x() else None

    def output_map(self, x: Tensor | None, hs: Tensor) -> Tensor:
        """h_t itself, or the output block on it: (T, B, H)."""
        return hs if self.block is None else self.block(hs, x)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, block={self.block_kind}"
