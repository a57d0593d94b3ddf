"""Dilated recurrence by time-to-batch: a layer whose recurrent connection reaches d steps
back, run by any engine unchanged.

Paper: Chang, Zhang, Han, Yu, Guo, Tan, Cui, Witbrock, Hasegawa-Johnson & Huang 2017,
"Dilated Recurrent Neural Networks", NeurIPS, https://arxiv.org/abs/1710.02224.

A dilated layer with dilation d computes, for any cell,

    (y_t, s_t) = cell(x_t, s_{t-d})              s_{t-d} = s_0 (the initial state) for t < d

so the sequence splits into d interleaved sub-sequences (phases r = t mod d) that never
interact. Time-to-batch runs them as d times more rows of an ordinary recurrence: pad T with
zero steps at the END up to T' = ceil(T / d) * d, then

    x (T', B, I) -> (T'/d, d*B, I),   row r*B + b of step i = x[i*d + r, b]

and the state (B, N) -> (d*B, N) by repeating it for every phase (each phase starts from
s_0), likewise the recurrent-dropout mask (one mask per sequence: all phases of a sequence
share it). The outputs come back with the inverse reshape, padding dropped. The padding sits
after the last real step, so it never reaches a real output; the layer's final state is the
one at the last real step T-1, i.e. phase (T-1) mod d after its last block (the padded steps
of the other phases are discarded, so no gradient flows through them). The authors' code
(github.com/code-terminator/DilatedRNN, ``dRNN``) pads and interleaves the same way.

Only the final state s_{T-1} leaves the layer, so a state carried into a next call does not
hold the d states a dilated layer would need: truncated BPTT is refused for dilations > 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from rnnzoo.cells.base import State
from rnnzoo.errors import UserError

Run = Callable[[Tensor, State, Tensor | None], tuple[Tensor, State]]


def check_dilations(dilations: Sequence[Any] | None, num_layers: int) -> list[int]:
    """``model.dilations`` validated: one integer >= 1 per layer (None: all 1).

    Raises:
        UserError: not a list of num_layers integers >= 1 (one line).
    """
    if dilations is None:
        return [1] * num_layers
    values = list(dilations) if isinstance(dilations, (list, tuple)) else [dilations]
    ok = len(values) == num_layers and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in values
    )
    if not ok:
        raise UserError(
            f"model.dilations must list one integer >= 1 per layer (num_layers={num_layers}), "
            f"e.g. [{', '.join(str(2**i) for i in range(num_layers))}], got {dilations!r}"
        )
    return [int(d) for d in values]


def run_dilated(run: Run, x: Tensor, state: State, mask: Tensor | None, dilation: int):
    """``run(x, state, mask) -> (ys, final)`` as a layer with ``dilation``: time-to-batch
    before, batch-to-time after (``run`` itself is any engine's plain recurrence).

    Returns:
        ys (T, B, O) and the state at the last step T-1.
    """
    if dilation == 1:
        return run(x, state, mask)
    steps = x.shape[0]
    batched = tuple(repeat_rows(s, dilation) for s in state)
    ys, final = run(to_batch(x, dilation), batched, repeat_rows(mask, dilation))
    return from_batch(ys, steps, dilation), final_state(final, steps, dilation)


def padded_steps(steps: int, dilation: int) -> int:
    """T' = T rounded up to a multiple of d."""
    return -(-steps // dilation) * dilation


def to_batch(x: Tensor, dilation: int) -> Tensor:
    """(T, B, I) -> (T'/d, d*B, I), zero steps appended so that d divides T'."""
    steps, batch = x.shape[0], x.shape[1]
    pad = padded_steps(steps, dilation) - steps
    if pad:
        x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])  # (T', B, I)
    return x.reshape(-1, dilation * batch, *x.shape[2:])


def from_batch(ys: Tensor, steps: int, dilation: int) -> Tensor:
    """(T'/d, d*B, O) -> (T, B, O): the inverse of ``to_batch``, padding dropped."""
    batch = ys.shape[1] // dilation
    return ys.reshape(-1, batch, *ys.shape[2:])[:steps]


def repeat_rows(t: Tensor | None, dilation: int) -> Tensor | None:
    """(B, N) -> (d*B, N): the same rows for every phase (initial state, dropout mask)."""
    return None if t is None else t.repeat(dilation, *([1] * (t.dim() - 1)))


def final_state(state: State, steps: int, dilation: int) -> State:
    """The state at the last real step T-1 from the phases' final states (d*B, N) each:
    phase (T-1) mod d, whose last block ends exactly at T-1."""
    phase = (steps - 1) % dilation
    batch = state[0].shape[0] // dilation
    return tuple(s[phase * batch : (phase + 1) * batch] for s in state)
