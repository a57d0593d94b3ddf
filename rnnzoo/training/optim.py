"""Optimizer, learning-rate scheduler and gradient clipping from the config.

``conf/optim/*.yaml`` and ``conf/scheduler/*.yaml`` name torch classes with ``_target_`` and
``_partial_: true``; the parameters / optimizer are passed here. ``scheduler=none`` has
``_target_: null``. Schedulers step once per epoch (``ReduceLROnPlateau`` with the epoch's
validation loss).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from rnnzoo.errors import UserError, one_line


def _build(group: str, cfg: Any, arg: Any) -> Any:
    try:
        # _convert_="all": plain lists/dicts, so state_dicts hold no OmegaConf objects
        factory = instantiate(cfg, _convert_="all")
        return factory(arg)
    except (InstantiationException, ValueError, TypeError) as err:
        target = cfg.get("_target_")
        raise UserError(f"cannot build {group} {target}: {one_line(err)}") from None


def build_optimizer(cfg: Any, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """``instantiate(cfg.optim)(trainable)``: only the parameters that require a gradient, so
    frozen ones (e.g. the ``esn`` reservoir) are not in the optimizer (no weight decay or
    momentum state for them).

    Raises:
        UserError: a bad target or value (e.g. a negative learning rate), in one line.
    """
    return _build("optimizer", cfg, [p for p in params if p.requires_grad])


def build_scheduler(cfg: Any, optimizer: torch.optim.Optimizer) -> Any | None:
    """``instantiate(cfg.scheduler)(optimizer)``, or None for ``scheduler=none``."""
    if cfg is None or cfg.get("_target_") is None:
        return None
    return _build("scheduler", cfg, optimizer)


def clip_gradients(
    params: Iterable[nn.Parameter], max_norm: float | None, max_value: float | None
) -> float:
    """Clip gradients in place and return their global L2 norm BEFORE clipping.

    The norm is computed even with clipping off (it is worth logging: spikes precede
    divergence). Norm clipping scales all gradients together so the global norm is at most
    ``max_norm``; value clipping then clamps each element to [-max_value, max_value] (which
    can only lower the norm further).
    """
    params = [p for p in params if p.grad is not None]
    if max_norm is None:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if max_value is not None:
        torch.nn.utils.clip_grad_value_(params, max_value)
    return norm.item()
