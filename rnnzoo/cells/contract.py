"""The cell contract, checked: is a class (or a built cell) something every engine can drive?

The registry runs these checks on cells that come from outside rnnzoo (``module:Class``
names, ``rnnzoo.cells`` entry points, cells registered by user modules), so a mistake
surfaces as one line naming the broken part instead of a traceback deep in an engine:

    cell 'mycells:Broken' breaks the cell contract: step() returned a 3-tuple; it must
    return (y_t, state)

Two levels (see ``rnnzoo.cells.base`` for the contract itself):

- ``check_cell_class``: a ``RecurrentCell`` subclass, built as ``cls(input_size,
  hidden_size, **kwargs)``, that overrides ``input_projection`` and ``step``.
- ``check_cell``: a built cell on a tiny probe (T=2 steps, B=2) without gradients and in
  eval mode, with a fixed input (no random numbers drawn, so probing never changes a
  seeded run): ``state_names``/``state_sizes`` (and ``state_shape``) agree;
  ``input_projection`` maps (T, B, I) to (T, B, P); ``step`` returns
  ``(y_t (B, output_size), state)`` with a state shaped like ``zero_state``, with and
  without a recurrent-dropout mask; ``output_is_h`` tells the truth; a declared
  ``native_mode`` uses every parameter and gives ``step``'s outputs, so does the scan
  protocol (``recurrence``, ...) when the cell has it; a declared
  ``fused_kernel`` comes with ``fused_params()`` in the family's layout (kernel name,
  shapes, no trainable parameter detached from the graph).
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rnnzoo.cells.base import FusedParams, RecurrentCell
from rnnzoo.errors import UserError, one_line

#: torch built-ins the native engine can run (``RecurrentCell.native_mode``)
NATIVE_MODES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")
_PROBE_T, _PROBE_B = 2, 2
_FAMILY_LINE = re.compile(r"^\s*RNNZOO_FAMILY\(\s*(\w+)\s*,", re.M)
_OWN_DRIVER = re.compile(r'\{\s*"(\w+)",\s*&')  # an entry of kOwnDrivers: {"lmu", &...


class CellContractError(UserError):
    """A cell class or instance that breaks the cell contract (one-line message)."""


def _fail(spec: str, part: str) -> CellContractError:
    return CellContractError(f"cell {spec!r} breaks the cell contract: {part}")


def check_cell_class(cls: Any, spec: str) -> type[RecurrentCell]:
    """Check what can be checked without building the cell; returns ``cls``.

    Args:
        cls: the object a ``module:Class`` name or an entry point points to.
        spec: how the user named it, for the message (e.g. "mycells:LeakyRNN").

    Raises:
        CellContractError: not a RecurrentCell subclass, a constructor that does not take
            (input_size, hidden_size) positionally, or input_projection/step not overridden.
    """
    if not isinstance(cls, type):
        raise _fail(spec, f"it is a {type(cls).__name__}, not a class (subclass RecurrentCell)")
    if not issubclass(cls, RecurrentCell):
        raise _fail(spec, f"{cls.__name__} is not a subclass of rnnzoo.RecurrentCell")
    try:
        inspect.signature(cls).bind_partial(1, 1)
    except TypeError:
        raise _fail(
            spec, f"{cls.__name__}() must take (input_size, hidden_size, **kwargs)"
        ) from None
    except ValueError:  # no signature to inspect (e.g. a C extension type): let the probe tell
        pass
    for method in ("input_projection", "step"):
        if getattr(cls, method) is getattr(RecurrentCell, method):
            raise _fail(spec, f"{cls.__name__} does not override {method}()")
    return cls


def _call(spec: str, what: str, fn, *args):
    """fn(*args), with any exception turned into a one-line contract error naming ``what``."""
    try:
        return fn(*args)
    except UserError:
        raise
    except Exception as err:
        raise _fail(spec, f"{what} raised {one_line(err, limit=300)}") from None


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def _check_state_decl(cell: RecurrentCell, spec: str) -> tuple[int, ...]:
    names = _call(spec, "state_names", getattr, cell, "state_names")
    if (
        not isinstance(names, tuple)
        or not names
        or not all(isinstance(n, str) for n in names)
        or len(set(names)) != len(names)
    ):
        raise _fail(spec, f"state_names must be a non-empty tuple of distinct str, got {names!r}")
    sizes = _call(spec, "state_sizes", getattr, cell, "state_sizes")
    sizes = tuple(sizes) if isinstance(sizes, (tuple, list)) else sizes
    if not isinstance(sizes, tuple) or len(sizes) != len(names):
        raise _fail(spec, f"state_sizes {sizes!r} must give one size per state in {names!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise _fail(spec, f"state_sizes must be integers >= 1, got {sizes!r}")
    shape = _call(spec, "state_shape", getattr, cell, "state_shape")
    if shape is not None and (
        not isinstance(shape, tuple)
        or not all(isinstance(n, int) and n >= 1 for n in shape)
        or any(math.prod(shape) != n for n in sizes)
    ):
        raise _fail(spec, f"state_shape {shape!r} must be None or a tuple whose product is {sizes}")
    out = _call(spec, "output_size", getattr, cell, "output_size")
    if not isinstance(out, int) or isinstance(out, bool) or out < 1:
        raise _fail(spec, f"output_size must be an integer >= 1, got {out!r}")
    return sizes


def _check_step_result(cell: RecurrentCell, spec: str, result: Any, sizes: tuple[int, ...]):
    if not isinstance(result, tuple) or len(result) != 2:
        got = f"a {len(result)}-tuple" if isinstance(result, tuple) else f"a {_shape(result)}"
        raise _fail(spec, f"step() returned {got}; it must return (y_t, state)")
    y, state = result
    want_y = (_PROBE_B, cell.output_size)
    if not isinstance(y, Tensor) or tuple(y.shape) != want_y:
        raise _fail(spec, f"step() returned y_t of shape {_shape(y)}; expected {want_y}")
    want = [(_PROBE_B, n) for n in sizes]
    got = (
        [tuple(s.shape) for s in state if isinstance(s, Tensor)]
        if isinstance(state, tuple)
        else None
    )
    if got != want or len(got) != len(state):
        raise _fail(
            spec,
            f"step() returned a state {_describe_state(state)}; expected a tuple of tensors "
            f"shaped {want} (state_names {cell.state_names}, state_sizes {sizes})",
        )
    return y, state


def _describe_state(state: Any) -> str:
    if isinstance(state, (tuple, list)):
        inner = ", ".join(_shape(s) for s in state)
        return f"{type(state).__name__} of [{inner}]"
    return _shape(state)


def fused_families() -> list[str]:
    """Kernel families compiled into the fused engine: the ``RNNZOO_FAMILY(name, ...)``
    lines of ``rnnzoo/engines/csrc/families/*.h`` and the families with a driver of their
    own (``kOwnDrivers`` in ``csrc/ops.cpp``: the LMU), read, not built (cheap); sorted."""
    csrc = Path(__file__).resolve().parents[1] / "engines" / "csrc"
    names = set()
    for header in (csrc / "families").glob("*.h"):
        names.update(_FAMILY_LINE.findall(header.read_text()))
    names.update(_OWN_DRIVER.findall((csrc / "ops.cpp").read_text()))
    return sorted(names)


def _check_fused(cell: RecurrentCell, spec: str) -> None:
    kernel = _call(spec, "fused_kernel", getattr, cell, "fused_kernel")
    params = _call(spec, "fused_params()", cell.fused_params)
    if kernel is None:
        if params is not None:
            raise _fail(spec, "fused_params() returns parameters but fused_kernel is None")
        return
    if not isinstance(kernel, str) or not kernel:
        raise _fail(spec, f"fused_kernel must be a kernel family name or None, got {kernel!r}")
    known = fused_families()
    if known and kernel not in known:
        raise _fail(
            spec, f"fused_kernel {kernel!r} is not a kernel family; known: {', '.join(known)}"
        )
    if not isinstance(params, FusedParams):
        raise _fail(spec, f"fused_kernel is {kernel!r} but fused_params() returned {params!r}")
    if params.kernel != kernel:
        raise _fail(spec, f"fused_params().kernel {params.kernel!r} != fused_kernel {kernel!r}")
    w_ih, bias, w_hh, extra = params.w_ih, params.bias, params.w_hh, params.extra
    if params.conv_width:
        _check_conv(cell, params, spec)
    elif not isinstance(w_ih, Tensor) or w_ih.dim() != 2 or w_ih.shape[1] != cell.input_size:
        raise _fail(spec, f"fused_params().w_ih is {_shape(w_ih)}; expected (G, input_size)")
    gates = w_ih.shape[0] * (params.conv_width or 1)
    if not isinstance(bias, Tensor) or tuple(bias.shape) != (gates,):
        raise _fail(spec, f"fused_params().bias is {_shape(bias)}; expected ({gates},)")
    if w_hh is not None and (not isinstance(w_hh, Tensor) or w_hh.dim() != 2):
        raise _fail(spec, f"fused_params().w_hh is {_shape(w_hh)}; expected (Gr, K) or None")
    if extra is not None and (not isinstance(extra, Tensor) or extra.dim() != 1):
        raise _fail(spec, f"fused_params().extra is {_shape(extra)}; expected (E,) or None")
    # constants are fine (a zero bias, step sizes, a frozen reservoir); a trainable
    # parameter taken out of the graph (.detach(), .data) would never learn on this engine
    trainable = {p.untyped_storage().data_ptr() for p in cell.parameters() if p.requires_grad}
    for name, t in (("w_ih", w_ih), ("bias", bias), ("w_hh", w_hh), ("extra", extra)):
        if t is not None and not t.requires_grad and t.untyped_storage().data_ptr() in trainable:
            raise _fail(
                spec,
                f"fused_params().{name} is a trainable parameter detached from the graph: build "
                "it with autograd so the fused engine's gradients reach it",
            )


def _check_conv(cell: RecurrentCell, params: FusedParams, spec: str) -> None:
    """A row cell's convolution kernels: w_ih (Go, C_in*k), w_hh (Go, C*k) over maps of width
    W = conv_width (input_size = C_in*W, state C*W)."""
    W, w_ih, w_hh = params.conv_width, params.w_ih, params.w_hh
    n_state = getattr(cell, "state_sizes", (cell.hidden_size,))[0]
    if not isinstance(W, int) or W < 1 or cell.input_size % W or n_state % W:
        raise _fail(spec, f"fused_params().conv_width {W!r} must divide the input and state")
    c_in, c = cell.input_size // W, n_state // W
    ok = all(isinstance(t, Tensor) and t.dim() == 2 for t in (w_ih, w_hh))
    k = w_hh.shape[1] // c if ok else 0
    if not ok or w_ih.shape != (w_hh.shape[0], c_in * k) or w_hh.shape[1] != c * k or k < 1:
        raise _fail(
            spec,
            f"fused_params() with conv_width={W}: w_ih {_shape(w_ih)} and w_hh {_shape(w_hh)} "
            f"must be kernels (Go, {c_in}*k) and (Go, {c}*k)",
        )


def check_cell(cell: Any, spec: str) -> None:
    """Probe a built cell: the instance-level contract (see the module docstring).

    Args:
        cell: what ``cls(input_size, hidden_size, **kwargs)`` returned.
        spec: how the user named the cell, for the message.

    Raises:
        CellContractError: the first broken part, in one line.
    """
    if not isinstance(cell, RecurrentCell):
        raise _fail(spec, f"the factory returned a {type(cell).__name__}, not a RecurrentCell")
    sizes = _check_state_decl(cell, spec)
    if not any(True for _ in cell.parameters()):
        raise _fail(spec, "the cell has no parameters (zero_state takes their device and dtype)")
    was_training = cell.training
    cell.eval()  # no dropout draws: probing must not move the random stream
    try:
        with torch.no_grad():
            _probe(cell, spec, sizes)
    finally:
        cell.train(was_training)
    _check_fused(cell, spec)
    _check_native(cell, spec)
    _check_scan(cell, spec)


def _check_native(cell: RecurrentCell, spec: str) -> None:
    """A declared native_mode: torch's layout, every parameter used, the same outputs."""
    mode = _call(spec, "native_mode", getattr, cell, "native_mode")
    if mode is None:
        return
    from rnnzoo.engines import loop, native  # late: the engines import the cells package

    if mode not in NATIVE_MODES or not native.supports(cell, torch.device("cpu"), 0.0):
        raise _fail(
            spec,
            f"native_mode {mode!r} needs one of {', '.join(NATIVE_MODES)} and torch's "
            "parameter layout (weight_ih, weight_hh, bias_ih, bias_hh); set it to None",
        )
    used = {id(p) for p in native._weights(cell)[0]}
    unused = [n for n, p in cell.named_parameters() if id(p) not in used]
    if unused:
        raise _fail(spec, f"native_mode {mode!r}: the native engine would ignore {unused}")
    x = _probe_input(cell)
    with torch.no_grad():
        want = loop.run(cell, x, cell.zero_state(_PROBE_B))[0]
        got = _call(spec, f"the native engine ({mode})", native.run, cell, x, cell.zero_state(2))
    if not torch.allclose(got[0], want, rtol=1e-4, atol=1e-5):
        raise _fail(spec, f"native_mode {mode!r}: torch's kernel gives other outputs than step()")


def _check_scan(cell: RecurrentCell, spec: str) -> None:
    """The scan protocol (``rnnzoo.cells.linear_recurrence``), if the cell has any of it:
    all of it, and the scan engine gives ``step``'s outputs (with a mask too)."""
    from rnnzoo.engines import loop, scan  # late: the engines import the cells package

    have = [m for m in scan.PROTOCOL if callable(getattr(cell, m, None))]
    if not have:
        return
    if len(have) < len(scan.PROTOCOL):
        missing = ", ".join(f"{m}()" for m in scan.PROTOCOL if m not in have)
        raise _fail(spec, f"it has part of the scan protocol but not {missing}")
    x = _probe_input(cell)
    mask = torch.ones(_PROBE_B, cell.hidden_size, dtype=x.dtype, device=x.device)
    mask[0, 0] = 0.0  # a dropped unit, so the mask's place in the recurrence counts
    with torch.no_grad():
        want = loop.run(cell, x, cell.zero_state(_PROBE_B), mask)[0]
        got = _call(spec, "the scan engine", scan.run, cell, x, cell.zero_state(_PROBE_B), mask)
    if not torch.allclose(got[0], want, rtol=1e-4, atol=1e-5):
        raise _fail(spec, "the scan engine (its recurrence()) gives other outputs than step()")


def _probe_input(cell: RecurrentCell) -> Tensor:
    """A fixed (T, B, I) input in the parameters' dtype and device (no random draw)."""
    T, B, n_in = _PROBE_T, _PROBE_B, cell.input_size
    ref = next(cell.parameters())
    x = torch.linspace(-1.0, 1.0, T * B * n_in, dtype=ref.dtype, device=ref.device)
    return x.reshape(T, B, n_in)


def _probe(cell: RecurrentCell, spec: str, sizes: tuple[int, ...]) -> None:
    T, B, n_in = _PROBE_T, _PROBE_B, cell.input_size
    ref = next(cell.parameters())
    x = _probe_input(cell)  # (T, B, I)
    xp = _call(spec, "input_projection()", cell.input_projection, x)
    if not isinstance(xp, Tensor) or xp.dim() != 3 or tuple(xp.shape[:2]) != (T, B):
        raise _fail(
            spec,
            f"input_projection() returned {_shape(xp)} for x of shape {(T, B, n_in)}; "
            "it must return (T, B, P)",
        )
    state = _call(spec, "zero_state()", cell.zero_state, B)
    xp_0, xp_1 = xp.unbind(0)
    result = _call(spec, "step()", cell.step, xp_0, state, None)
    y, state = _check_step_result(cell, spec, result, sizes)
    if cell.output_is_h and not torch.equal(y, state[0]):
        raise _fail(
            spec, "output_is_h is True but step()'s y_t is not the new state[0]; set it False"
        )
    mask = torch.ones(B, cell.hidden_size, dtype=ref.dtype, device=ref.device)
    result = _call(spec, "step() with a recurrent-dropout mask", cell.step, xp_1, state, mask)
    _check_step_result(cell, spec, result, sizes)
