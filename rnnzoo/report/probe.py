"""Look inside a model's recurrence without knowing its cells: probe every cell's ``step``.

The ``loop`` engine calls ``cell.step`` once per time step. ``probe(model)`` replaces ``step`` on
each cell INSTANCE (classes are untouched, the originals come back on exit) by a wrapper that,
at step t of cell k, may

- keep the new state h_t (the tensor the step returned, in the graph), so that
  ``torch.autograd.grad(loss, h_t)`` is dL/dh_t, the total gradient reaching h_t through
  every use of it (the next step, this step's output, the next layer, the readout);
- record h_t (detached), every state tensor when the cell's state is spatial, and the gates the
  cell hands to ``observe`` (their mean over units);
- scale the gradient flowing back into the incoming state by a constant c: each backward step
  through time then multiplies by c, so what reaches h_t is c^(T - t) * dL/dh_t (see
  ``rnnzoo.report.gradflow``, which uses it to keep 784-step products inside float64's range).

Only the ``loop`` engine calls ``step``; build the probed model with ``engine="loop"``
(:func:`loop_copy`). Nothing here branches on the cell type: it uses the contract
(``state[0]`` is h, ``observe``, ``state_shape``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rnnzoo.cells.base import RecurrentCell, State


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return grad * ctx.scale, None


@dataclass
class CellRecord:
    """What the probe saw of one cell (one layer and direction), step by step.

    Attributes:
        probes: h_t (B, size of h) per step, in the graph (``grad=True`` only).
        hidden: h_t (B, size of h) per step, detached (``record=True`` only).
        states: every state tensor per step, detached (``record=True`` and spatial cells).
        gates: gate name -> its mean over units per step, (B,) each (``record=True`` only).
    """

    probes: list[Tensor] = field(default_factory=list)
    hidden: list[Tensor] = field(default_factory=list)
    states: list[State] = field(default_factory=list)
    gates: dict[str, list[Tensor]] = field(default_factory=dict)


def cells_of(model: nn.Module) -> list[RecurrentCell]:
    """The model's cells in order ``layer * D + direction`` (module registration order)."""
    return [m for m in model.modules() if isinstance(m, RecurrentCell)]


def layer_names(model: nn.Module) -> list[str]:
    """One name per cell: "layer0", or "layer0" / "layer0.reverse" when bidirectional."""
    args = model.model_args()
    directions = 2 if args.get("bidirectional") else 1
    n = len(cells_of(model))
    suffix = ("", ".reverse")
    return [f"layer{k // directions}{suffix[k % directions]}" for k in range(n)]


def loop_copy(model: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A copy of ``model`` that runs the ``loop`` engine in ``dtype``, in eval mode.

    Rebuilt from ``model_args()`` (what checkpoints use to rebuild a model) with the global
    RNG forked, so building it never changes a seeded run's random stream.
    """
    ref = next(model.parameters())
    devices = [ref.device] if ref.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        copy = type(model)(**{**model.model_args(), "engine": "loop"})
    copy.to(device=ref.device, dtype=dtype)  # before loading: no round trip through float32
    copy.load_state_dict(model.state_dict())
    return copy.eval()


@contextlib.contextmanager
def probe(
    model: nn.Module, grad: bool = False, record: bool = False, grad_scale: float = 1.0
) -> Iterator[list[CellRecord]]:
    """Probe every cell of ``model`` (built with the loop engine) while the block runs.

    Args:
        model: a model whose cells are ``RecurrentCell`` instances, run by the loop engine.
        grad: keep every h_t in the graph for ``torch.autograd.grad``.
        record: record hidden states, spatial states and observed gates.
        grad_scale: c, the factor applied to the gradient entering the previous state.

    Yields:
        One ``CellRecord`` per cell, in ``cells_of(model)`` order, filled as the model runs.
    """
    cells = cells_of(model)
    records = [CellRecord() for _ in cells]
    try:
        for cell, rec in zip(cells, records, strict=True):
            cell.step = _wrap(cell, rec, grad, record, grad_scale)
            if record:
                cell.observer = _gate_recorder(rec)
        yield records
    finally:
        for cell in cells:
            cell.__dict__.pop("step", None)  # the class's step again
            cell.__dict__.pop("observer", None)


def _gate_recorder(rec: CellRecord):
    def observe(activations: dict[str, Tensor]) -> None:
        for name, value in activations.items():
            rec.gates.setdefault(name, []).append(value.detach().flatten(1).mean(1))  # (B,)

    return observe


def _wrap(cell: RecurrentCell, rec: CellRecord, grad: bool, record: bool, scale: float):
    original = cell.step  # the bound class method
    spatial = cell.state_shape is not None

    def step(xp_t: Tensor, state: State, rec_mask: Tensor | None = None) -> tuple[Tensor, State]:
        if scale != 1.0:
            state = tuple(_ScaleGrad.apply(s, scale) for s in state)
        y, new = original(xp_t, state, rec_mask)
        h = new[0]  # (B, size of h)
        if grad:
            rec.probes.append(h)
        if record:
            rec.hidden.append(h.detach())
            if spatial:
                rec.states.append(tuple(s.detach() for s in new))
        return y, new

    return step
