"""Shared check for the float64 reference tests of single cells (tests/test_<cell>.py).

A reference is written from the paper's equations, on the raw input x (T, B, I), a random
initial state and an optional recurrent-dropout mask; ``assert_matches_reference`` runs the
cell through the loop engine and checks outputs, final state and the gradients of EVERY
parameter, of x and of the initial state against the reference's (float64, tight).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnzoo.cells import RecurrentCell
from rnnzoo.engines import loop

F64 = torch.float64
T, B, I, H = 6, 3, 4, 5  # noqa: E741  (steps, batch, input, hidden)


def randomize_(cell: RecurrentCell, scale: float = 0.6) -> RecurrentCell:
    """Non-zero values everywhere, so every term of the equations is exercised."""
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-scale, scale)
    return cell


def inputs(cell: RecurrentCell, masked: bool, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, cell.input_size, generator=g, dtype=F64, requires_grad=True)
    state = tuple(
        (0.5 * torch.randn(B, n, generator=g, dtype=F64)).requires_grad_() for n in cell.state_sizes
    )
    mask = None
    if masked:
        mask = (torch.rand(B, cell.hidden_size, generator=g, dtype=F64) > 0.4).to(F64) / 0.6
    return x, state, mask


def assert_matches_reference(
    cell: RecurrentCell,
    reference: Callable[[RecurrentCell, Tensor, tuple, Tensor | None], tuple[Tensor, tuple]],
    masked: bool,
    tol: float = 1e-10,
) -> None:
    """Outputs, final state and all gradients of the loop engine == the reference's."""
    x, state, mask = inputs(cell, masked)
    leaves = [x, *state, *cell.parameters()]
    results = []
    for fn in (loop.run, lambda c, x_, s, m: reference(c, x_, s, m)):
        ys, final = fn(cell, x, state, mask)
        w = torch.linspace(-1.0, 1.0, ys.numel(), dtype=F64).view_as(ys)
        loss = (w * ys).sum() + sum((0.3 * s * s).sum() for s in final)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        results.append((ys, final, grads))
    (ys0, st0, g0), (ys1, st1, g1) = results
    torch.testing.assert_close(ys0, ys1, rtol=tol, atol=tol)
    for a, b in zip(st0, st1, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    names = [
        "x",
        *(f"state{i}" for i in range(len(state))),
        *(n for n, _ in cell.named_parameters()),
    ]
    for name, a, b in zip(names, g0, g1, strict=True):
        assert a is not None and b is not None, f"no gradient for {name}"
        assert a.abs().sum() > 0, f"zero gradient for {name}"
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")
