"""The native engine: torch's own RNN kernels (cuDNN on GPU) with the cell's parameters.

For cells that are exactly a torch.nn built-in (``cell.native_mode`` in LSTM, GRU,
RNN_TANH, RNN_RELU), the whole sequence runs in one call of ``torch._VF.lstm`` / ``gru`` /
``rnn_tanh`` / ``rnn_relu``: the same functions ``torch.nn.LSTM`` etc. call, for one layer
and one direction. The cell's own parameter tensors are passed in, so gradients land on the
cell's parameters. The cells use torch's gate order (LSTM i,f,g,o; GRU r,z,n) and torch's
names (``weight_ih`` (G, I), ``weight_hh`` (G, H), ``bias_ih`` (G,), ``bias_hh`` (G,)), so no
reordering is needed. No recurrent dropout: the built-ins have no per-sequence mask on h.

On CUDA, _VF picks cuDNN by itself when the inputs live on the GPU. cuDNN wants the weights
in one flat buffer (what ``nn.LSTM.flatten_parameters`` builds); our weights live in the
cell, so cuDNN copies them into a buffer on each call (a few hundred KB, negligible next to a
784-step sequence) and warns about it every time. We silence that one warning.
"""

from __future__ import annotations

import warnings

import torch
from torch import _VF, Tensor

from rnnzoo.cells.base import RecurrentCell, State

_KERNELS = {
    "LSTM": _VF.lstm,
    "GRU": _VF.gru,
    "RNN_TANH": _VF.rnn_tanh,
    "RNN_RELU": _VF.rnn_relu,
}
_FLAT_WEIGHT_WARNING = r"RNN module weights are not part of single contiguous chunk"


def _weights(cell: RecurrentCell) -> tuple[list[Tensor], bool] | None:
    """The cell's tensors in _VF's order, and whether biases are among them; None if the cell
    does not have the built-in's parameter layout."""
    w_ih = getattr(cell, "weight_ih", None)
    w_hh = getattr(cell, "weight_hh", None)
    b_ih = getattr(cell, "bias_ih", None)
    b_hh = getattr(cell, "bias_hh", None)
    if w_ih is None or w_hh is None or (b_ih is None) != (b_hh is None):
        return None
    if b_ih is None:
        return [w_ih, w_hh], False
    return [w_ih, w_hh, b_ih, b_hh], True


def supports(cell: RecurrentCell, device: torch.device, recurrent_dropout: float) -> bool:
    """Built-in-equivalent cells without recurrent dropout, on any device."""
    mode = getattr(cell, "native_mode", None)
    return mode in _KERNELS and recurrent_dropout == 0 and _weights(cell) is not None


def run(
    cell: RecurrentCell, x: Tensor, state: State, rec_mask: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` with torch's kernel for ``cell.native_mode``.

    Args:
        cell: a cell with ``native_mode`` set.
        x: input sequence (T, B, I).
        state: ``(h,)`` or, for LSTM, ``(h, c)``; each (B, H).
        rec_mask: must be None.

    Returns:
        ys (T, B, H) and the final state, a tuple like ``state``.
    """
    if rec_mask is not None:
        raise ValueError("the native engine cannot apply recurrent dropout; use loop or fused")
    mode = cell.native_mode
    params, has_biases = _weights(cell)
    params = [p.contiguous() for p in params]  # no-op for ordinary parameters
    hx = [s.unsqueeze(0).contiguous() for s in state]  # (1, B, H) each: layers x directions
    x = x.contiguous()  # cuDNN wants it; a no-op for the usual (T, B, I) batch
    # (params, has_biases, num_layers, dropout, train, bidirectional, batch_first); train=True
    # keeps what cuDNN's backward needs, and without grad there is no backward.
    args = (params, has_biases, 1, 0.0, torch.is_grad_enabled(), False, False)
    with warnings.catch_warnings():
        if x.is_cuda:
            warnings.filterwarnings("ignore", _FLAT_WEIGHT_WARNING, UserWarning)
        if mode == "LSTM":
            ys, h_n, c_n = _KERNELS[mode](x, hx, *args)  # (T, B, H), (1, B, H) x 2
            return ys, (h_n[0], c_n[0])
        ys, h_n = _KERNELS[mode](x, hx[0], *args)  # (T, B, H), (1, B, H)
        return ys, (h_n[0],)
