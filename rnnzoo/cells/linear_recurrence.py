"""What the element-wise linear recurrences (LRU, minGRU, minLSTM) share: the recurrence
h_t = a_t * h_{t-1} + b_t over the whole sequence, and an optional per-layer output block.

Because a_t and b_t depend on the input alone, a cell describes its whole sequence at once
(``recurrence(xp)``), and the ``scan`` engine (``rnnzoo.engines.scan``) solves it as a
parallel prefix scan instead of a loop. ``step`` (the reference, driven by the ``loop``
engine) uses the same coefficients one step at a time.

The scan protocol, on top of the cell contract (``rnnzoo.cells.base``):

- ``recurrence(xp) -> Recurrence(a, b, log_space)``: for xp (T, B, P), the coefficients in
  the scan domain, each (T, B, K) (``a`` may be (K,) when it does not depend on the input).
  ``log_space``: ``a`` and ``b`` hold log a_t and log b_t (real; minGRU/minLSTM keep
  h > 0, so the scan can run on logs, as their paper does). Complex tensors for LRU.
- ``to_scan(h)`` / ``from_scan(h)``: the state tensor h (B, S) <-> the scan domain (B, K).
  Real cells: the identity. A complex state is stored as real [Re h | Im h] (B, 2K), so
  every engine, checkpoint and initial-state path sees real tensors.
- ``output_map(x, hs) -> ys``: the per-step output from the layer's input and the new
  state, for a whole sequence: x (T, B, I), hs (T, B, S) -> ys (T, B, O). The identity
  (``output_is_h``) unless the cell has an output matrix (LRU) or an output block. Cells
  whose output reads x append x to their input projection, so that ``step`` (which sees
  xp_t only) has it: ``input_of(xp)`` returns that tail, or None.

Recurrent dropout: the mask multiplies h where it enters the recurrence,
h_t = a_t * (m * h_{t-1}) + b_t (on the scan domain; both parts of a complex unit).

Output block (``block="glu"``, optional): the layer around an LRU in its paper (Orvieto et
al. 2023, Fig. 1 and Appendix D; the postnorm variant of the authors' reference code), used
here for all three cells so that stacked layers have a nonlinearity between them:

    y_t = LayerNorm(s_t + GLU(GELU(o_t))),   GLU(v) = (W_1 v + c_1) * sigmoid(W_2 v + c_2)

with o_t the cell's own output and s_t = x_t when the layer's input is as wide as its
output (a residual connection), else 0. W_1, W_2 (H, H) are one ``nn.Linear(H, 2H)``
(torch's default init), LayerNorm with affine parameters. No dropout inside the block
(the model's ``dropout`` acts between layers).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import RecurrentCell, State

BLOCKS = ("none", "glu")


class Recurrence(NamedTuple):
    """h_t = a_t * h_{t-1} + b_t for a whole sequence, in the scan domain.

    a: (T, B, K), or (K,) when constant over time and batch; log a_t when ``log_space``.
    b: (T, B, K); log b_t when ``log_space``.
    log_space: True when a and b are logs (a_t > 0, b_t > 0).
    """

    a: Tensor
    b: Tensor
    log_space: bool

    def linear(self) -> tuple[Tensor, Tensor]:
        """(a, b) themselves, whatever the space."""
        return (self.a.exp(), self.b.exp()) if self.log_space else (self.a, self.b)


class GLUBlock(nn.Module):
    """y = LayerNorm(skip + GLU(GELU(o))) over the last dim (see the module docstring).

    Args:
        width: H, the width of o and y.
        residual: add the layer's input x (must be H wide) before the norm.
    """

    def __init__(self, width: int, residual: bool) -> None:
        super().__init__()
        self.residual = bool(residual)
        self.glu = nn.Linear(width, 2 * width)  # [W_1; W_2], one matmul
        self.norm = nn.LayerNorm(width)

    def forward(self, o: Tensor, x: Tensor | None) -> Tensor:
        """o (..., H), x (..., H) or None -> (..., H)."""
        u, gate = self.glu(F.gelu(o)).chunk(2, dim=-1)
        y = u * torch.sigmoid(gate)
        if self.residual:
            y = y + x
        return self.norm(y)

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class LinearRecurrenceCell(RecurrentCell):
    """Base of the cells whose recurrence is h_t = a_t * h_{t-1} + b_t, element-wise.

    Subclasses set ``complex_state`` and implement ``input_projection``, ``recurrence``
    and, when the output is not h, ``output_map``. ``step`` is generic.
    """

    #: the state is complex, stored as real [Re h | Im h]
    complex_state: bool = False

    def recurrence(self, xp: Tensor) -> Recurrence:
        """The coefficients for the whole sequence xp (T, B, P), see ``Recurrence``."""
        raise NotImplementedError

    def to_scan(self, h: Tensor) -> Tensor:
        """State layout (..., S) -> scan domain (..., K) (complex for a complex state)."""
        if not self.complex_state:
            return h
        re, im = h.chunk(2, dim=-1)
        return torch.complex(re, im)

    def from_scan(self, h: Tensor) -> Tensor:
        """Scan domain (..., K) -> state layout (..., S)."""
        if not self.complex_state:
            return h
        return torch.cat([h.real, h.imag], dim=-1)

    def fused_mask(self, rec_mask: Tensor) -> Tensor:
        """The (B, H) recurrent-dropout mask in the state layout (B, S) the fused kernel
        reads: both halves of a complex state."""
        return torch.cat([rec_mask, rec_mask], dim=-1) if self.complex_state else rec_mask

    def output_map(self, x: Tensor | None, hs: Tensor) -> Tensor:
        """Input (T, B, I) (None when unused), states (T, B, S) -> outputs (T, B, O); the
        identity here."""
        return hs

    def gates(self, xp: Tensor) -> dict[str, Tensor]:
        """Named gate activations of the step xp (B, P), each (B, width), for diagnostics
        (``observe``); {} for ungated cells (the default)."""
        return {}

    def input_of(self, xp: Tensor) -> Tensor | None:
        """The raw input x appended to the input projection (..., I), or None (default)."""
        return None

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, S)
        gates = {} if self.observer is None else self.gates(xp_t)  # only when observed
        if gates:
            self.observe(**gates)
        a, b = self.recurrence(xp_t.unsqueeze(0)).linear()  # (1, B, K) or (K,)
        hk = self.to_scan(h)  # (B, K)
        if rec_mask is not None:
            hk = hk * rec_mask
        a_t = a if a.dim() == 1 else a[0]
        h = self.from_scan(a_t * hk + b[0])  # (B, S)
        x_t = self.input_of(xp_t)
        y = self.output_map(None if x_t is None else x_t.unsqueeze(0), h.unsqueeze(0))[0]
        return y, (h,)


def check_block(block: str) -> str:
    """Validate the ``block`` cell option; returns it lower-cased."""
    key = str(block).lower()
    if key not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; valid: {', '.join(BLOCKS)}")
    return key
