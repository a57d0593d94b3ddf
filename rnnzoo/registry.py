"""Cell registry: names -> factories, and cells brought from outside rnnzoo.

A decorator registers a factory (usually the cell class) under a name; ``create_cell``
builds one, ``list_cells`` lists names (fnmatch filter, sorted), ``is_cell`` asks.
Aliases map classic names (``rnn+``) to registered ones. Duplicates raise: in a small zoo a
silently replaced cell is always a bug.

Cells from outside, no fork needed (``docs/cells.md``):

- ``module:Class`` anywhere a cell name goes (``model.cell=mycells:LeakyRNN``): the module
  is imported from ``sys.path`` on first use and the class checked against the contract
  (``rnnzoo.cells.contract``). The name is kept as given (case matters in Python names);
  ``cell_label`` gives the class name for run names and tables.
- The ``rnnzoo.cells`` entry-point group: ``name = "pkg.module:Class"`` registers the class
  as ``name``; ``name = "pkg.module"`` imports a module that registers its cells itself.
  Loaded lazily on the first registry lookup; a broken plugin gives one warning.

Every cell built from a factory that does not live in rnnzoo is probed against the contract
(``check_cell``) when it is created, so a broken cell fails in one line, before training.
Problems with a ``module:Class`` name raise ``UserError`` (unknown registry names keep
raising ``ValueError``).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from rnnzoo.errors import UserError, one_line

_CELLS: dict[str, Callable[..., Any]] = {}
_ALIASES: dict[str, str] = {}
#: "module:Class" -> class, imported and checked once
_USER_CELLS: dict[str, type] = {}
#: the entry-point group a package declares its cells in
ENTRY_POINT_GROUP = "rnnzoo.cells"
_plugins_loaded = False


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


def is_spec(name: str) -> bool:
    """True for a ``module:Class`` name (a cell imported from outside the registry)."""
    return ":" in str(name)


def cell_label(name: str) -> str:
    """The short name of a cell for run names and tables: the class of a ``module:Class``
    name ("mycells:LeakyRNN" -> "LeakyRNN"), a registry name unchanged."""
    name = str(name)
    return name.rpartition(":")[2].rpartition(".")[2] if is_spec(name) else name


def resolve_name(name: str) -> str:
    """The registered name for ``name`` or an alias, or ``name`` itself for ``module:Class``
    (imported and checked on first use).

    Raises:
        ValueError: an unknown registry name (one line, with the valid names).
        UserError: a ``module:Class`` whose module or class is missing or breaks the contract.
    """
    if is_spec(name):
        _load_spec(name)
        return name
    _load_plugins()
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key in _CELLS:
        return key
    valid = sorted(_CELLS) + sorted(_ALIASES)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown cell {name!r}{hint}; valid cells: {', '.join(sorted(_CELLS))} "
        "or module:Class for your own"
    )


def create_cell(name: str, input_size: int, hidden_size: int, **kwargs: Any):
    """Build the cell registered as ``name`` (or an alias, or ``module:Class``).

    Cells whose factory lives outside rnnzoo are probed against the contract once built.
    """
    key = resolve_name(name)
    factory = _USER_CELLS[key] if is_spec(key) else _CELLS[key]
    cell = factory(input_size, hidden_size, **kwargs)
    if not getattr(factory, "__module__", "").startswith("rnnzoo."):
        from rnnzoo.cells.contract import check_cell

        check_cell(cell, name)
    return cell


def list_cells(pattern: str = "*") -> list[str]:
    """Registered cell names matching the fnmatch ``pattern``, sorted (aliases excluded)."""
    _load_plugins()
    return sorted(n for n in _CELLS if fnmatch.fnmatch(n, pattern))


def is_cell(name: str) -> bool:
    """True if ``name`` is a registered cell or alias, or an importable ``module:Class``
    that passes the class-level contract checks."""
    if is_spec(name):
        try:
            _load_spec(name)
        except UserError:
            return False
        return True
    _load_plugins()
    key = name.lower()
    return key in _CELLS or key in _ALIASES


def cell_aliases() -> dict[str, str]:
    """Alias -> registered name."""
    _load_plugins()
    return dict(_ALIASES)


# --- cells from outside ------------------------------------------------------------------------


def _load_spec(spec: str) -> type:
    """Import ``module:Class`` (``Class`` may be dotted), check the class, cache it."""
    if spec in _USER_CELLS:
        return _USER_CELLS[spec]
    from rnnzoo.cells.contract import check_cell_class  # late: the cells import this module

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise UserError(f"cell {spec!r}: expected module:Class, e.g. mycells:LeakyRNN")
    module = _import(spec, module_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = getattr(module, "__file__", None) or module_name
            found = [n for n, v in vars(module).items() if _is_cell_class(v)]
            listed = f"; its cell classes: {', '.join(sorted(found))}" if found else ""
            raise UserError(f"cell {spec!r}: {where} has no attribute {attr!r}{listed}")
        obj = getattr(obj, part)
    _USER_CELLS[spec] = check_cell_class(obj, spec)
    return obj


def _import(spec: str, module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or module_name
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise UserError(
                f"cell {spec!r}: no module named {missing!r} on sys.path "
                "(run from its directory with PYTHONPATH=., or pip install its package)"
            ) from None
        raise UserError(f"cell {spec!r}: importing {module_name!r} failed: {err}") from None
    except Exception as err:
        raise UserError(
            f"cell {spec!r}: importing {module_name!r} failed: {one_line(err)}"
        ) from None


def _is_cell_class(value: Any) -> bool:
    from rnnzoo.cells.base import RecurrentCell

    is_class = isinstance(value, type) and issubclass(value, RecurrentCell)
    return is_class and value is not RecurrentCell


def _load_plugins() -> None:
    """Register the cells of every ``rnnzoo.cells`` entry point, once; warn on a broken one."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            _load_plugin(ep)
        except Exception as err:  # a broken plugin must not break the zoo
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
            warnings.warn(
                f"rnnzoo: cell plugin {ep.name} = {ep.value!r} from {dist} not loaded: "
                f"{one_line(err)}",
                RuntimeWarning,
                stacklevel=3,
            )


def _load_plugin(ep: importlib.metadata.EntryPoint) -> None:
    from rnnzoo.cells.contract import check_cell_class

    obj = ep.load()
    if isinstance(obj, ModuleType):  # importing it registered its cells
        return
    name = ep.name.lower()
    if _CELLS.get(name) is obj:  # the module registered it under the same name itself
        return
    register_cell(name)(check_cell_class(obj, f"{ep.name} = {ep.value}"))
