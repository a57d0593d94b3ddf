"""Engines: how one cell runs over a whole sequence.

An engine is a module with two functions, and optionally a third:

- ``supports(cell, device, recurrent_dropout) -> bool``: can it run this cell here? It must
  be cheap and must not raise.
- ``run(cell, x, state, rec_mask) -> (ys, state)``: x (T, B, I) -> ys (T, B, output_size)
  and the final state (a tuple, see ``rnnzoo.cells.base``). An engine that maps states to
  outputs batched over time (``output_map``: LRU, block outputs) may also take
  ``last_only=True`` and say so with a module attribute ``LAST_ONLY = True``: it then maps
  only the last step (the top layer's readout needs nothing else).
- ``check(cell, spec) -> (ok, message)`` (optional): the real test for a ``RunSpec`` (device,
  parameter dtype, autocast), done once at setup; it may build things (the fused engine
  compiles its C++ library here). ``message`` says why not, or notes how it runs ("" if
  nothing to say).

``resolve(name, cell, spec)`` picks the engine once, at setup, and returns a ``Resolution``
(engine name + note); an engine asked for by name that cannot run is a one-line UserError,
and ``auto`` falls through its order for real, noting why it skipped an engine.

The table maps names to modules: ``loop`` (reference, always works) and ``native``
(torch/cuDNN kernels for built-in-equivalent cells) are always present. Optional engines
(``fused``) are imported on first use of the table if their module exists; another module
can also add itself with ``register_engine``. ``auto`` picks the first engine of
``AUTO_ORDER[device.type]`` that is in the table and supports the cell.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Where and how a layer runs: device, parameter dtype, autocast dtype (None: off)."""

    device: torch.device
    dtype: torch.dtype = torch.float32
    autocast: torch.dtype | None = None
    recurrent_dropout: float = 0.0

    def describe(self) -> str:
        """E.g. "cpu", "cpu with float64 parameters", "cpu under bfloat16 autocast"."""
        parts = [self.device.type]
        if self.dtype != torch.float32:
            parts.append(f"with {str(self.dtype).removeprefix('torch.')} parameters")
        if self.autocast is not None:
            parts.append(f"under {str(self.autocast).removeprefix('torch.')} autocast")
        if self.recurrent_dropout:
            parts.append(f"with recurrent_dropout={self.recurrent_dropout}")
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The engine chosen for one layer, and a note (fallback reasons, how it runs; "" if none)."""

    engine: str
    note: str = ""


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


def _check(name: str, cell: RecurrentCell, spec: RunSpec) -> tuple[bool, str]:
    """Can engine ``name`` run ``cell`` for ``spec``? (ok, reason or note)."""
    module = engines()[name]
    if not module.supports(cell, spec.device, spec.recurrent_dropout):
        return False, ""
    check = getattr(module, "check", None)
    return check(cell, spec) if callable(check) else (True, "")


def resolve(name: str, cell: RecurrentCell, spec: RunSpec) -> Resolution:
    """The engine that really runs ``cell`` for ``spec``: ``name`` itself, or for "auto" the
    first engine of ``AUTO_ORDER`` whose check passes (the note names the skipped ones and
    why). Call once at setup: the fused engine's check builds its C++ library.

    Raises:
        UserError: unknown name, or the named engine cannot run this cell here (one line).
    """
    key = str(name).lower()
    table = engines()
    if key != "auto" and key not in table:
        check_engine_name(name)
    order = [key] if key != "auto" else valid_engines(cell, spec.device, spec.recurrent_dropout)
    skipped = []
    for engine in order:
        ok, message = _check(engine, cell, spec)
        if ok:
            return Resolution(engine, "; ".join([*skipped, *([message] if message else [])]))
        if message:
            skipped.append(f"{engine} skipped: {message}")
        if key != "auto":
            valid = [e for e in valid_engines(cell, spec.device) if _check(e, cell, spec)[0]]
            why = f" ({message})" if message else ""
            raise UserError(
                f"engine {name!r} cannot run {type(cell).__name__} on {spec.describe()}{why}; "
                f"valid engines for it: {', '.join(['auto', *valid])}"
            )
    raise UserError(f"no engine can run {type(cell).__name__} on {spec.describe()}")


def resolve_engine(
    name: str, cell: RecurrentCell, device: torch.device | str, recurrent_dropout: float = 0.0
) -> str:
    """``resolve(...).engine`` for float32 parameters without autocast.

    Raises:
        UserError: unknown name, or the named engine cannot run this cell/device/option.
    """
    spec = RunSpec(torch.device(device), recurrent_dropout=recurrent_dropout)
    return resolve(name, cell, spec).engine


def check_engine_name(name: str) -> None:
    """Raise UserError unless ``name`` is "auto" or a known engine (support is not checked)."""
    if str(name).lower() not in list_engines():
        raise UserError(f"unknown engine {name!r}; valid engines: {', '.join(list_engines())}")


def run_layer(
    engine: str,
    cell: RecurrentCell,
    x: Tensor,
    state: State,
    rec_mask: Tensor | None = None,
    last_only: bool = False,
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` (T, B, I) with the named engine (already resolved, not "auto").

    Args:
        last_only: return only the last step's output (1, B, O). Engines with
            ``LAST_ONLY`` then skip the per-step output map of the other T-1 steps; the
            rest compute every step and are sliced.

    Returns:
        ys (T, B, cell.output_size), or (1, B, cell.output_size) when ``last_only``, and
        the final state.
    """
    module = _ENGINES.get(engine) or engines().get(engine)
    if module is None:
        rate = 0.0 if rec_mask is None else 0.5  # any nonzero rate: which engines take masks
        valid = ", ".join(valid_engines(cell, x.device, rate))
        raise UserError(
            f"unknown engine {engine!r}; valid engines for {type(cell).__name__} on "
            f"{x.device.type}: {valid}"
        )
    if not last_only:
        return module.run(cell, x, state, rec_mask)
    if getattr(module, "LAST_ONLY", False):
        return module.run(cell, x, state, rec_mask, last_only=True)
    ys, final = module.run(cell, x, state, rec_mask)
    return ys[-1:], final
