"""Initialization helpers shared by the cells (each cell's ``reset_parameters`` says what it
uses and why)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


@torch.no_grad()
def uniform_fan_(*tensors: Tensor, hidden_size: int) -> None:
    """U(-1/sqrt(H), 1/sqrt(H)) in place: torch.nn.RNN/LSTM/GRU's default for every weight."""
    bound = 1.0 / math.sqrt(hidden_size)
    for t in tensors:
        nn.init.uniform_(t, -bound, bound)


@torch.no_grad()
def recurrent_init_(weight: Tensor, kind: str, gain: float, hidden_size: int) -> None:
    """Square recurrent matrix (H, H) in place: "orthogonal", "identity" or "uniform",
    scaled by ``gain`` (the uniform kind ignores it)."""
    if kind == "orthogonal":
        nn.init.orthogonal_(weight, gain=gain)
    elif kind == "identity":
        weight.copy_(gain * torch.eye(hidden_size, dtype=weight.dtype, device=weight.device))
    elif kind == "uniform":
        uniform_fan_(weight, hidden_size=hidden_size)
    else:
        raise ValueError(f"unknown recurrent_init {kind!r}; valid: {', '.join(RECURRENT_INITS)}")


RECURRENT_INITS = ("orthogonal", "identity", "uniform")
