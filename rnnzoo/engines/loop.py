"""The reference engine: a Python loop over time with autograd.

Works for every cell on every device; every other engine is tested against it.

The input GEMM runs once for the whole sequence (``cell.input_projection``), then the loop
walks ``xp.unbind(0)``. Never ``xp[t]``: in an autograd loop each indexed slice gets a
full-size (T, B, P) zero gradient in backward, which makes backward O(T^2) (53 s instead of
0.7 s per sMNIST batch, measured here). ``unbind`` gives one backward node for all steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnzoo.cells.base import RecurrentCell, State


def supports(cell: RecurrentCell, device: torch.device, recurrent_dropout: float) -> bool:
    """The loop runs anything."""
    return True


def run(
    cell: RecurrentCell, x: Tensor, state: State, rec_mask: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell`` over the sequence ``x`` step by step.

    Args:
        cell: the cell.
        x: input sequence (T, B, I).
        state: initial state, a tuple of (B, size) tensors.
        rec_mask: recurrent-dropout mask (B, hidden_size) used at every step, or None.

    Returns:
        ys (T, B, cell.output_size) and the final state.
    """
    xp = cell.input_projection(x)  # (T, B, P)
    ys = []
    for xp_t in xp.unbind(0):  # (B, P) each; unbind, never xp[t] (see module docstring)
        y_t, state = cell.step(xp_t, state, rec_mask)  # (B, O)
        ys.append(y_t)
    return torch.stack(ys), state  # (T, B, O)
