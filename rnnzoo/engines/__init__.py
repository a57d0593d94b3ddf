"""Engines: how one cell runs over a whole sequence.

An engine is a module with two functions:

- ``supports(cell, device, recurrent_dropout) -> bool``: can it run this cell here? It must
  be cheap and must not raise; an engine that cannot be built on this machine says False.
- ``run(cell, x, state, rec_mask) -> (ys, state)``: x (T, B, I) -> ys (T, B, output_size)
  and the final state (a tuple, see ``rnnzoo.cells.base``).

The table maps names to modules: ``loop`` (reference, always works) and ``native``
(torch/cuDNN kernels for built-in-equivalent cells) are always present. Optional engines
(``fused``) are imported on first use of the table if their module exists; another module
can also add itself with ``register_engine``. ``auto`` picks the first engine of
``AUTO_ORDER[device.type]`` that is in the table and supports the cell.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

import torch
from torch import Tensor

from rnnzoo.cells.base import RecurrentCell, State
from rnnzoo.engines import loop, native
from rnnzoo.errors import UserError

log = logging.getLogger(__name__)

_ENGINES: dict[str, ModuleType] = {"loop": loop, "native": native}
#: engine modules under rnnzoo.engines imported lazily when present
_OPTIONAL = ("fused", "scan")
_optional_loaded = False

#: preference for "auto", fastest first. On CUDA, cuDNN (native) wins for the cells it can
#: run; on CPU the fused kernels beat torch's LSTM (see DESIGN.md measured facts).
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("fused", "scan", "native", "loop"),
    "cuda": ("native", "scan", "fused", "loop"),
}


def register_engine(name: str, module: ModuleType) -> None:
    """Add (or replace) an engine; ``module`` has ``supports`` and ``run``."""
    if not (callable(getattr(module, "supports", None)) and callable(getattr(module, "run", None))):
        raise TypeError(f"engine {name!r} must define supports() and run()")
    _ENGINES[name] = module


def _load_optional() -> None:
    global _optional_loaded
    if _optional_loaded:
        return
    _optional_loaded = True
    for name in _OPTIONAL:
        if name in _ENGINES:
            continue
        qualname = f"{__name__}.{name}"
        try:
            module = importlib.import_module(qualname)
        except ModuleNotFoundError as err:
            if err.name != qualname:  # the module exists but one of its imports is missing
                log.warning("engine %r unavailable: %s", name, err)
            continue
        except Exception as err:  # a broken optional engine must not break the others
            log.warning("engine %r unavailable: %s: %s", name, type(err).__name__, err)
            continue
        _ENGINES.setdefault(name, module)


def engines() -> dict[str, ModuleType]:
    """Name -> engine module, optional engines included when importable."""
    _load_optional()
    return dict(_ENGINES)


def list_engines() -> list[str]:
    """All engine names in the table, plus "auto", sorted."""
    return sorted([*engines(), "auto"])


def valid_engines(
    cell: RecurrentCell, device: torch.device | str, recurrent_dropout: float = 0.0
) -> list[str]:
    """Engines that support ``cell`` on ``device``, in ``auto`` preference order."""
    device = torch.device(device)
    table = engines()
    order = AUTO_ORDER.get(device.type, AUTO_ORDER["cpu"])
    names = [n for n in order if n in table] + sorted(n for n in table if n not in order)
    return [n for n in names if table[n].supports(cell, device, recurrent_dropout)]


def _describe(cell: RecurrentCell, device: torch.device, recurrent_dropout: float) -> str:
    what = f"{type(cell).__name__} on {device.type}"
    return f"{what} with recurrent_dropout={recurrent_dropout}" if recurrent_dropout else what


def resolve_engine(
    name: str, cell: RecurrentCell, device: torch.device | str, recurrent_dropout: float = 0.0
) -> str:
    """The engine to use: ``name`` itself if it supports the cell, or the fastest for "auto".

    Raises:
        UserError: unknown name, or the named engine cannot run this cell/device/option.
    """
    device = torch.device(device)
    valid = valid_engines(cell, device, recurrent_dropout)
    key = str(name).lower()
    if key == "auto":
        return valid[0]  # loop supports everything, so never empty
    if key in valid:
        return key
    choices = ", ".join(["auto", *valid])
    if key not in engines():
        raise UserError(
            f"unknown engine {name!r}; valid engines for "
            f"{_describe(cell, device, recurrent_dropout)}: "
            f"{choices}"
        )
    raise UserError(
        f"engine {name!r} cannot run {_describe(cell, device, recurrent_dropout)}; "
        f"valid engines for it: {choices}"
    )


def check_engine_name(name: str) -> None:
    """Raise UserError unless ``name`` is "auto" or a known engine (support is not checked)."""
    if str(name).lower() not in list_engines():
        raise UserError(f"unknown engine {name!r}; valid engines: {', '.join(list_engines())}")


def run_layer(
    engine: str, cell: RecurrentCell, x: Tensor, state: State, rec_mask: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` (T, B, I) with the named engine (already resolved, not "auto").

    Returns:
        ys (T, B, cell.output_size) and the final state.
    """
    module = _ENGINES.get(engine) or engines().get(engine)
    if module is None:
        rate = 0.0 if rec_mask is None else 0.5  # any nonzero rate: which engines take masks
        valid = ", ".join(valid_engines(cell, x.device, rate))
        raise UserError(
            f"unknown engine {engine!r}; valid engines for {type(cell).__name__} on "
            f"{x.device.type}: {valid}"
        )
    return module.run(cell, x, state, rec_mask)
