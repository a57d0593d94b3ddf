"""Helpers for the per-cell reference tests (tests/test_<cell>.py): one loss that weights every
output and the final state differently, its gradients with respect to the input, the initial
state and every trainable parameter, and a comparison of two such results."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnzoo.cells import RecurrentCell

F64 = torch.float64
Result = tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor]]


def inputs(cell: RecurrentCell, steps: int, batch: int, seed: int = 1, masked: bool = False):
    """x (T, B, I) and an initial state, both needing gradients, and an optional recurrent
    dropout mask (0 or 1/keep, (B, hidden_size)), float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, cell.input_size, generator=g, dtype=F64, requires_grad=True)
    state = tuple(
        (0.5 * torch.randn(batch, n, generator=g, dtype=F64)).requires_grad_()
        for n in cell.state_sizes
    )
    mask = None
    if masked:
        keep = torch.rand(batch, cell.hidden_size, generator=g, dtype=F64) > 0.3
        mask = keep.to(F64) / 0.7
    return x, state, mask


def loss_of(ys: Tensor, final: tuple[Tensor, ...]) -> Tensor:
    """Weights every output element differently, plus a quadratic term on the final state."""
    w = torch.linspace(-1.0, 1.0, ys.numel(), dtype=ys.dtype).view_as(ys)
    return (w * ys).sum() + sum((0.3 * s * s).sum() for s in final)


def result(
    run: Callable[..., tuple[Tensor, tuple[Tensor, ...]]],
    cell: RecurrentCell,
    x: Tensor,
    state: tuple[Tensor, ...],
    mask: Tensor | None,
) -> Result:
    """Outputs, final state and {name: gradient} for x, every initial state tensor and every
    trainable parameter of ``cell``, from ``run(cell, x, state, mask)``."""
    ys, final = run(cell, x, state, mask)
    named = {"x": x} | {f"state{i}": s for i, s in enumerate(state)}
    named |= {n: p for n, p in cell.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(loss_of(ys, final), list(named.values()), allow_unused=True)
    return ys, tuple(final), dict(zip(named, grads, strict=True))


def assert_same(got: Result, ref: Result, tol: float = 1e-10) -> None:
    """Outputs, final states and every gradient equal within ``tol`` (a gradient missing on
    one side and not the other fails)."""
    torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
    for a, b in zip(got[1], ref[1], strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert got[2].keys() == ref[2].keys()
    for name, g in got[2].items():
        r = ref[2][name]
        assert (g is None) == (r is None), f"gradient of {name}: {g} vs {r}"
        if g is not None:
            torch.testing.assert_close(g, r, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


def conv_same(x: Tensor, kernel: Tensor) -> Tensor:
    """Reference 1-D "same" cross-correlation from its definition, on flattened maps:
    x (B, C*W) channel-major, kernel (O, C, k) with k odd -> (B, O*W), where
    y[o, w] = sum_{c, j} kernel[o, c, j] * x[c, w + j - (k - 1) / 2] (zero outside 0..W-1)."""
    n_out, C, k = kernel.shape
    maps = x.reshape(x.shape[0], C, -1)  # (B, C, W)
    W, half = maps.shape[-1], (k - 1) // 2
    out = x.new_zeros(x.shape[0], n_out, W)
    for j in range(k):
        shift = j - half  # y[.., w] reads x[.., w + shift]
        lo, hi = max(0, -shift), min(W, W - shift)
        out[:, :, lo:hi] += torch.einsum(
            "bcw,oc->bow", maps[:, :, lo + shift : hi + shift], kernel[:, :, j]
        )
    return out.reshape(x.shape[0], -1)
