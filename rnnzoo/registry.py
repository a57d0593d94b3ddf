"""Cell registry: names -> factories.

A decorator registers a factory (usually the cell class) under a name; ``create_cell``
builds one, ``list_cells`` lists names (fnmatch filter, sorted), ``is_cell`` asks.
Aliases map classic names (``rnn+``) to registered ones. Duplicates raise: in a small zoo a
silently replaced cell is always a bug.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any

_CELLS: dict[str, Callable[..., Any]] = {}
_ALIASES: dict[str, str] = {}


def register_cell(name: str, aliases: tuple[str, ...] = ()) -> Callable:
    """Register a cell factory under ``name`` (and optional ``aliases``).

    Raises:
        ValueError: if the name or an alias is already taken.
    """

    def decorator(factory: Callable) -> Callable:
        for key in (name, *aliases):
            if key in _CELLS or key in _ALIASES:
                raise ValueError(f"cell name {key!r} is already registered")
        _CELLS[name] = factory
        for alias in aliases:
            _ALIASES[alias] = name
        return factory

    return decorator


def resolve_name(name: str) -> str:
    """Return the registered name for ``name`` or an alias; one-line ValueError otherwise."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key in _CELLS:
        return key
    valid = sorted(_CELLS) + sorted(_ALIASES)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown cell {name!r}{hint}; valid cells: {', '.join(sorted(_CELLS))}")


def create_cell(name: str, input_size: int, hidden_size: int, **kwargs: Any):
    """Build the cell registered as ``name`` (or an alias)."""
    return _CELLS[resolve_name(name)](input_size, hidden_size, **kwargs)


def list_cells(pattern: str = "*") -> list[str]:
    """Registered cell names matching the fnmatch ``pattern``, sorted (aliases excluded)."""
    return sorted(n for n in _CELLS if fnmatch.fnmatch(n, pattern))


def is_cell(name: str) -> bool:
    """True if ``name`` is a registered cell or alias."""
    key = name.lower()
    return key in _CELLS or key in _ALIASES


def cell_aliases() -> dict[str, str]:
    """Alias -> registered name."""
    return dict(_ALIASES)
