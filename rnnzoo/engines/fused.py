"""The fused engine: one C++ time loop per layer with a hand-derived backward (CPU).

Each cell with a ``fused_kernel`` attribute runs as ONE sequence-level autograd function
(``_FusedSequence``, parameterized by the kernel name): its forward and its backward each
call one C++ op (``rnnzoo/engines/csrc/``: one header per kernel family, shared drivers; built
at first use by ``fused_build``) that walks all T steps outside the Python interpreter:

- forward, per step: the input pre-activations b + x_t W_ih^T (inline for I <= 4, else a
  GEMM), one recurrent GEMM (h_{t-1} * mask) W_hh^T, one vectorized pass over the gates;
- backward, reverse loop: one vectorized pass for the pre-activation gradients, one GEMM
  for dh_{t-1}; the weight gradients as GEMMs over chunks of steps (256 rows: faster than
  one tall-skinny GEMM over all T * B rows, measured); gradients of the initial state, and
  of x when it needs one (stacked layers);
- the batch is split into fixed shards of ~64 rows for the whole sequence (its rows never
  interact); threads take whole shards, so the loop has no per-step thread synchronization,
  every GEMM is single-threaded, and the shard layout (hence every rounding) depends on the
  batch size only: bit-identical results for any number of threads;
- denormals are flushed to zero in the kernels' threads: on sMNIST the gradients that fade
  over 784 steps turn denormal and make torch's own kernels several times slower (nn.LSTM:
  7.4 s instead of 0.93 s per batch on real Fashion-MNIST pixels, measured here).

Each cell says how its parameters map onto its kernel family (``cell.fused_params()``, see
``rnnzoo.cells.base.FusedParams``), so this engine holds no per-cell tables. Two optional
cell hooks: ``fused_mask(rec_mask)`` maps the (B, H) mask onto the kernel's state layout
(packed states), and ``output_map(x, ys)`` turns the kernel's state sequence into the
outputs, batched over time (LRU: Re(C h) + D x; ``rnnzoo.cells.linear_recurrence``), or for
the last step only when the layer asks (``last_only``: the top layer); the tests check
every kernel against the ``loop`` engine (outputs and all gradients, with recurrent-dropout
masks and carried states).

Devices and dtypes: CPU, float32 and float64 parameters. ``supports`` (cheap) says False
on other devices: the C++ kernels work on raw CPU pointers. ``check`` (at setup, through
``rnnzoo.engines.resolve``) builds the library and says False, with the reason, when it
cannot be built, when the cell's family is not in it, or for other parameter dtypes; then
``auto`` moves on (``native``, ``loop``) and an explicit ``engine=fused`` is a UserError.
There is no silent fallback inside ``run``.

Under CPU autocast (``trainer.precision=bf16``) the kernels run in float32: ``run`` turns
autocast off for the layer, casts its input and state to float32 and returns float32
outputs (the next op, under autocast again, casts as it likes). ``check`` notes it.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnzoo.cells.base import RecurrentCell, State
from rnnzoo.engines import fused_build

log = logging.getLogger(__name__)

_DTYPES = (torch.float32, torch.float64)
AUTOCAST_NOTE = "{} autocast: fused kernels compute in float32"
#: ``run`` takes ``last_only`` (see ``rnnzoo.engines.run_layer``)
LAST_ONLY = True


def kernel_name(cell: RecurrentCell) -> str | None:
    """The C++ kernel family of ``cell`` (e.g. "lstm", "elman_relu"), or None if it has none."""
    name = getattr(cell, "fused_kernel", None)
    return name if isinstance(name, str) and name else None


def supports(cell: RecurrentCell, device: torch.device, recurrent_dropout: float) -> bool:
    """CPU cells that name a fused kernel family; with recurrent dropout only when the
    state is hidden_size wide (the mask's width) or the cell maps the mask (``fused_mask``)."""
    if torch.device(device).type != "cpu" or kernel_name(cell) is None:
        return False
    sizes = getattr(cell, "state_sizes", (cell.hidden_size,))
    maps_mask = callable(getattr(cell, "fused_mask", None))
    return not recurrent_dropout or sizes[0] == cell.hidden_size or maps_mask


def check(cell: RecurrentCell, spec) -> tuple[bool, str]:
    """Can the kernels run ``cell`` for ``spec`` (a ``rnnzoo.engines.RunSpec``)? Builds the
    library (once per process). Returns (ok, reason or note)."""
    if spec.dtype not in _DTYPES:
        return False, f"the fused kernels support float32 and float64, not {spec.dtype}"
    try:
        families = fused_build.load_ops().families()
    except fused_build.FusedBuildError as err:
        return False, f"the fused C++ kernels could not be built ({err})"
    if kernel_name(cell) not in families:
        return False, f"kernel family {kernel_name(cell)!r} is not in the fused library"
    if spec.autocast is not None:
        name = str(spec.autocast).removeprefix("torch.")
        return True, AUTOCAST_NOTE.format(name)
    return True, ""


class _FusedSequence(torch.autograd.Function):
    """One layer over a whole sequence; the backward is the C++ reverse loop.

    Inputs after the five constants: x (T, B, I), w_ih (G, I), b (G,), w_hh (Gr, H) (the
    compact kernel when ``conv_width`` > 0) or an empty tensor, extra (E,) or an empty
    tensor, then the n_state initial state tensors. ``train``: keep what backward needs
    (False without a graph: no per-step buffers).
    Outputs: ys (T, B, O) and the final state tensors.
    """

    @staticmethod
    def forward(ctx, kernel, mask, n_state, train, conv_width, x, w_ih, b, w_hh, extra, *state):  # noqa: D102
        ops = fused_build.load_ops()
        conv = {"conv_width": conv_width} if conv_width else {}  # row cells only
        out = ops.forward(kernel, x, w_ih, b, w_hh, extra, list(state), mask, train, **conv)
        ys, finals, saved = out[0], out[1 : 1 + n_state], out[1 + n_state :]
        ctx.set_materialize_grads(False)  # unused outputs get None, not (T, B, O) zeros
        if train:
            # everything through save_for_backward, intermediates (c sequence, activations)
            # included: autograd frees them right after backward, not when the graph dies
            ctx.kernel, ctx.n_state, ctx.conv_width = kernel, n_state, conv_width
            ctx.save_for_backward(x, w_ih, w_hh, extra, mask, ys, *state, *saved)
        return (ys, *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx, dys, *dstate):  # noqa: D102
        ops = fused_build.load_ops()
        x, w_ih, w_hh, extra, mask, ys, *rest = ctx.saved_tensors
        state, saved = rest[: ctx.n_state], rest[ctx.n_state :]
        need_dx = ctx.needs_input_grad[5]
        # incoming gradients can be expanded views (the gradient of .sum() has stride 0)
        dys = None if dys is None else dys.contiguous()
        dstate = [None if d is None else d.contiguous() for d in dstate]
        grads = ops.backward(
            ctx.kernel, x, w_ih, w_hh, extra, state, mask, ys, saved, dys, list(dstate), need_dx,
            **({"conv_width": ctx.conv_width} if ctx.conv_width else {}),
        )  # fmt: skip
        dx, dw_ih, db, dw_hh, dextra, *dstate0 = grads
        return (
            None,
            None,
            None,
            None,
            None,
            dx if need_dx else None,
            dw_ih,
            db,
            dw_hh if w_hh.numel() else None,
            dextra if extra.numel() else None,
            *dstate0,
        )


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def run(
    cell: RecurrentCell,
    x: Tensor,
    state: State,
    rec_mask: Tensor | None = None,
    last_only: bool = False,
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` with its fused kernel (resolved at setup: see ``check``).

    Under CPU autocast the layer runs with autocast off, in float32 (see the module
    docstring).

    Args:
        cell: a cell whose ``fused_kernel`` is in the library.
        x: input sequence (T, B, I).
        state: initial state, a tuple of (B, N) tensors.
        rec_mask: recurrent-dropout mask (B, N) applied to h where it enters the recurrent
            product at every step, or None.
        last_only: map only the last step's state to an output.

    Returns:
        ys (T, B, cell.output_size), (1, B, cell.output_size) when ``last_only``, and the
        final state.

    Raises:
        FusedBuildError: the library cannot be built (``check`` says so at setup).
        ValueError: the cell has no kernel, or input, state and parameters differ in dtype.
    """
    if _cpu_autocast():
        with torch.autocast("cpu", enabled=False):
            state = tuple(s.float() for s in state)
            return _run(cell, x.float(), state, rec_mask, last_only)
    return _run(cell, x, state, rec_mask, last_only)


def _run(cell: RecurrentCell, x: Tensor, state: State, rec_mask: Tensor | None, last_only: bool):
    kernel = kernel_name(cell)
    if kernel is None:
        raise ValueError(f"{type(cell).__name__} has no fused kernel; use the loop engine")
    ops = fused_build.load_ops()  # raises FusedBuildError before any work
    params = cell.fused_params()
    if params is None or params.kernel != kernel:
        raise ValueError(f"{type(cell).__name__}.fused_params() does not match fused_kernel")
    _, w_ih, bias, w_hh, extra, conv_width = params
    dtypes = {x.dtype, w_ih.dtype, *(s.dtype for s in state)}
    if len(dtypes) != 1:
        names = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
        raise ValueError(f"fused engine: input, state and parameters differ in dtype ({names})")
    empty = x.new_empty(0)
    if rec_mask is not None and callable(getattr(cell, "fused_mask", None)):
        rec_mask = cell.fused_mask(rec_mask)  # the kernel's state layout, e.g. packed states
    mask = None if rec_mask is None else rec_mask.to(x.dtype).contiguous()
    tensors = (
        x.contiguous(),
        w_ih.contiguous(),
        bias.contiguous(),
        empty if w_hh is None else w_hh.contiguous(),
        empty if extra is None else extra.contiguous(),
        *(s.contiguous() for s in state),
    )
    # decided here: inside forward() grad mode is always off and needs_input_grad ignores it
    train = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    outs = _FusedSequence.apply(kernel, mask, len(state), train, int(conv_width), *tensors)
    ys = outs[0]
    if last_only:
        # where the output is the state, read the last one from the final state: backward
        # then never fills a (T, B, O) zero gradient for the unused steps
        x, ys = x[-1:], outs[1].unsqueeze(0) if ops.state_output(kernel) else ys[-1:]
    if callable(getattr(cell, "output_map", None)):
        ys = cell.output_map(x, ys)  # a per-step output of (x_t, h_t), batched over time
    elif ys.shape[-1] != cell.output_size:  # a packed state [h | m]: its first columns (LMU)
        ys = ys[..., : cell.output_size]
    return ys, tuple(outs[1:])
