"""Evaluation: mean loss and accuracy of a model on one split (full sequences, eval mode)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.data import Split


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    batch_size: int,
    limit: int | None = None,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction in [0, 1]) over ``split``.

    The model runs in eval mode (no dropout, no recurrent-dropout masks) over whole sequences,
    whatever truncation training uses; its previous mode is restored afterwards.

    Args:
        model: a ``SequenceClassifier``.
        split: the data split (its batches are (T, B, I) on the model's device).
        batch_size: sequences per forward.
        limit: at most this many batches (None: the whole split).
        autocast: context factory around each forward (bf16 autocast or nullcontext).

    Returns:
        (loss, accuracy); (nan, nan) for an empty split.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    seen = 0
    try:
        for x, y in split.batches(batch_size, limit=limit):
            with autocast():
                logits, _ = model(x)  # (B, C)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            loss_sum += loss.double().cpu()
            correct += (logits.argmax(-1) == y).sum().cpu()
            seen += y.numel()
    finally:
        model.train(was_training)
    if seen == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / seen, correct.item() / seen
