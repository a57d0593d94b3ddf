"""The cell contract every engine and the model drive, so nothing outside a cell branches
on its type.

- State is a tuple of tensors, ``(h,)`` or ``(h, c)``, each (B, size); ``state_sizes``
  declares the sizes and ``zero_state`` builds them (one implementation for every cell).
- ``input_projection(x)`` maps the whole input sequence (T, B, I) to per-step
  pre-activations (T, B, P) in ONE matrix multiply (the input GEMM batched over time).
- ``step(xp_t, state, rec_mask)`` does only the recurrent part for one step and returns
  ``(y_t, new_state)``; ``y_t`` is (B, output_size). ``rec_mask`` (B, hidden_size) or None
  is the recurrent-dropout mask (already scaled by 1/keep), multiplied into h where h
  enters the recurrent product, drawn once per sequence by the model.
- Cells own their initialization in ``reset_parameters``.
- ``native_mode`` names the torch built-in the cell is exactly (for the native engine).
- ``fused_kernel`` names the C++ kernel family (and variant, e.g. "elman_tanh") that
  implements its step, or None; ``fused_params()`` maps the cell's parameters onto that
  family (``FusedParams``), so the fused engine holds no per-cell tables; a cell whose
  state packs several (coRNN's [y | z], N wide) maps the (B, H) dropout mask onto it in
  ``fused_mask``; a kernel output wider than ``output_size`` (the LMU's [h | m]) is cut to
  its first ``output_size`` columns; a kernel that also multiplies the state by a constant
  matrix each step (the LMU's Abar) names it in ``fused_constant_recurrence()`` for the
  benchmark's GEMM-only floor.
- ``recurrent_matrices()`` returns the matrices (or diagonals) that multiply the state each
  step, for diagnostics (spectral radius, largest singular value); empty when there are none.
- ``post_step_()`` is called by the trainer after every optimizer step on every module that
  has it (no-op here; IndRNN clamps its recurrent weights).
- Diagnostics (``rnnzoo.report``), both optional: gated cells call ``self.observe(i=i, ...)``
  inside ``step`` with their gate activations (B, width), a no-op unless a recorder is
  attached; cells whose state is spatial set ``state_shape`` (e.g. (C, H, W)), so each state
  tensor (B, size) reshapes to (B, *state_shape) for activation maps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


class FusedParams(NamedTuple):
    """What a fused kernel family needs from a cell, built from its parameters with autograd
    (the engine returns the gradients of these tensors, autograd carries them back).

    kernel: the C++ kernel family and variant, e.g. "lstm", "elman_tanh".
    w_ih: (G, I) input weight; the input pre-activations are x W_ih^T + bias.
    bias: (G,) the input-side bias, folded the way ``input_projection`` folds it.
    w_hh: (Gr, K) weight of the one recurrent GEMM per step, or None (element-wise cells);
        with ``conv_width`` the compact kernel (Gr / W, C * k) of a 1-D convolution.
    extra: flat family-specific parameters (E,) (peepholes, IndRNN's u, GRU's b_hn), or None.
    conv_width: 0, or W > 0: the recurrent product is the 1-D "same" convolution with kernel
        ``w_hh`` over the state's C = K / W channel-major maps of width W (row cells), not a
        dense GEMM; the family reads its output in the same (gate * C + c) * W + w layout.
    """

    kernel: str
    w_ih: Tensor
    bias: Tensor
    w_hh: Tensor | None
    extra: Tensor | None
    conv_width: int = 0


def gate_blocks(weight: Tensor, names: str) -> dict[str, Tensor]:
    """Split a stacked recurrent weight (k*H, H) into its k square gate blocks, named
    ``W_h<name>`` in ``names`` order (e.g. "ifgo" -> W_hi, W_hf, W_hg, W_ho)."""
    return {f"W_h{n}": w for n, w in zip(names, weight.chunk(len(names), dim=0), strict=True)}


class RecurrentCell(nn.Module):
    """Base class for every registered cell."""

    #: names of the state tensors, e.g. ("h",) or ("h", "c"); h is always first.
    state_names: tuple[str, ...] = ("h",)
    #: True when ``y_t`` is the new state's h (every cell but +RNN, whose output is its carry)
    output_is_h: bool = True
    #: torch built-in this cell is exactly, with the same parameters: "LSTM" | "GRU" |
    #: "RNN_TANH" | "RNN_RELU"; None when there is no such built-in.
    native_mode: str | None = None
    #: fused kernel implementing ``step`` over a sequence ("lstm", "gru", ...), or None.
    fused_kernel: str | None = None
    #: spatial shape of each state tensor, e.g. (C, H, W) for a ConvLSTM; None: a vector
    state_shape: tuple[int, ...] | None = None
    #: recorder of ``observe`` calls, attached by diagnostics (``rnnzoo.report``); None: off
    observer: Callable[[dict[str, Tensor]], None] | None = None

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Width of each state tensor (default: every state is hidden_size wide)."""
        return tuple(self.hidden_size for _ in self.state_names)

    @property
    def output_size(self) -> int:
        """Width of ``y_t`` returned by ``step``."""
        return self.hidden_size

    def zero_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> State:
        """All-zero state with the parameters' device and dtype unless given."""
        ref = next(self.parameters())
        device = ref.device if device is None else device
        dtype = ref.dtype if dtype is None else dtype
        return tuple(
            torch.zeros(batch_size, n, device=device, dtype=dtype) for n in self.state_sizes
        )

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, P): everything that depends on x alone, in one matmul."""
        raise NotImplementedError

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """One recurrent step: (B, P), state -> (y_t (B, output_size), new state)."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def fused_params(self) -> FusedParams | None:
        """This cell's parameters in its fused kernel family's layout (None: no kernel)."""
        return None

    def fused_mask(self, rec_mask: Tensor) -> Tensor:
        """The recurrent-dropout mask (B, hidden_size) in the family's state layout (B, N).

        The default returns it unchanged (state width N = hidden_size); a cell that packs
        several states into one (coRNN's [y | z]) says how the mask covers the packed state."""
        return rec_mask

    def recurrent_matrices(self) -> dict[str, Tensor]:
        """Name -> the matrix (K, K) or diagonal (K,) that multiplies the state each step.

        For diagnostics only (spectra, singular values). Gated cells give one entry per gate
        block (e.g. "W_hi", "W_hf", ...); element-wise cells give their diagonal (may be
        complex); cells with no recurrent matrix return {} (the default)."""
        return {}

    def observe(self, **activations: Tensor) -> None:
        """Hand named activations computed inside ``step`` (gates, (B, width) each) to the
        attached ``observer``, for diagnostics; a no-op when none is attached. Gated cells call
        it once per step, e.g. ``self.observe(i=i, f=f, o=o)``."""
        if self.observer is not None:
            self.observer(activations)

    def post_step_(self) -> None:
        """Hook the trainer calls after every optimizer step (e.g. to clamp weights). No-op."""

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"
