"""Truncated backpropagation through time for a sequence classifier.

sMNIST has one label, at the last step, so truncation has two readings (``trainer.tbptt``):

- ``final`` (the default mode when ``steps`` > 0): run the first T-k steps under
  ``torch.no_grad`` (no graph, memory O(k)), then backpropagate through the last k steps only.
  The loss is the one full BPTT would compute (same forward values); only its gradient is
  cut. One update per batch, so it is a drop-in for full BPTT with bounded memory.
- ``chunks``: split the sequence into k-step chunks; carry the state across chunks but detach
  it at each boundary; predict the label from every prefix (a loss at each chunk end) and
  update after every chunk. This is the classic language-model recipe; for a label that is
  only defined at the end, the early losses train the model to guess from partial input.

``steps`` 0 or null (the default) is full BPTT: the whole sequence in one graph. ``final`` is
the default mode because it keeps the objective of the benchmark (classify the whole
sequence) and changes only how far gradients reach.

Recurrent-dropout masks are drawn once per batch by the caller and passed to every chunk, so
a sequence sees one mask whatever the truncation. Bidirectional models cannot be truncated
(the backward direction needs the whole sequence first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from rnnzoo.cells.base import State
from rnnzoo.errors import UserError

MODES = ("final", "chunks")


def check(steps: int | None, mode: str, bidirectional: bool, dilated: bool = False) -> int:
    """Validate ``trainer.tbptt``; return k (0 = full BPTT).

    Raises:
        UserError: negative steps, unknown mode, or truncation of a bidirectional or dilated
            model.
    """
    k = 0 if steps is None else steps
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise UserError(f"trainer.tbptt.steps must be an integer >= 0 (0 = full BPTT), got {k!r}")
    if mode not in MODES:
        raise UserError(f"unknown trainer.tbptt.mode={mode!r}; valid: {', '.join(MODES)}")
    if k and bidirectional:
        raise UserError(
            "truncated BPTT cannot train a bidirectional model (the reverse direction needs the "
            "whole sequence); set trainer.tbptt.steps=0 or model.bidirectional=false"
        )
    if k and dilated:
        raise UserError(
            "truncated BPTT cannot train a dilated model (a layer with dilation d carries d "
            "states across a chunk boundary, the model only 1); set trainer.tbptt.steps=0 "
            "or model.dilations=null"
        )
    return k


def detach_state(state: Sequence[State]) -> list[State]:
    """Cut the graph at a chunk boundary: same values, no history (else backward would run
    through every earlier chunk again and memory would grow with T)."""
    return [tuple(t.detach() for t in s) for s in state]


def forward_pieces(
    model: nn.Module,
    x: Tensor,
    steps: int,
    mode: str,
    masks: Sequence[Tensor | None] | None,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> Iterator[Tensor]:
    """Run ``model`` over ``x`` and yield the logits of every piece that gets a loss and an
    update; the caller updates the parameters before asking for the next piece.

    Args:
        model: a ``SequenceClassifier`` (``model(x, state, masks) -> (logits, state)``).
        x: input (T, B, I).
        steps: truncation window k; 0 or >= T means full BPTT (one piece).
        mode: "final" (one piece: the last k steps) or "chunks" (ceil(T / k) pieces).
        masks: recurrent-dropout masks for the whole sequence (same for every chunk).
        autocast: context factory wrapped around each forward (bf16 autocast or nullcontext).

    Yields:
        logits (B, C). The last piece's logits always depend on the whole sequence (state is
        carried), so they give the batch's prediction.
    """
    length = x.size(0)
    if not steps or steps >= length:
        with autocast():
            logits, _ = model(x, masks=masks)  # (B, C)
        yield logits
        return
    if mode == "final":
        with torch.no_grad(), autocast():
            _, state = model(x[: length - steps], masks=masks)  # no graph for T-k steps
        with autocast():
            logits, _ = model(x[length - steps :], state=state, masks=masks)  # (B, C)
        yield logits
        return
    state = None
    for start in range(0, length, steps):
        with autocast():
            logits, state = model(x[start : start + steps], state=state, masks=masks)
        yield logits  # the caller backpropagates and steps here
        state = detach_state(state)
