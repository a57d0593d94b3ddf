"""``StableLinear``: ``nn.Linear`` whose gradients do not depend on the number of threads.

torch's backward of a linear layer computes dW = dy^T x with one BLAS GEMM whose inner
dimension (the batch rows) is split across threads: with 1 and 2 threads the partial sums
are added in different orders, and a training run's numbers drift apart in the last bits
(measured here: the readout's weight gradient of an sMNIST LSTM differed by 5e-10 between
``torch.set_num_threads(1)`` and ``2``; everything else in the step was bit-identical).
On CPU, in float32/float64, ``StableLinear`` computes dW and db with the fused library's
``weight_grad`` op: rows in fixed chunks, one single-threaded GEMM per chunk, chunks summed
in order. The forward and dx (inner dimension: features, not rows) stay torch's. Elsewhere
(CUDA, other dtypes, library not built) it is exactly ``nn.Linear``.

Same parameters and state-dict keys as ``nn.Linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnzoo.engines import fused_build

_DTYPES = (torch.float32, torch.float64)


class _StableLinearFn(torch.autograd.Function):
    """y = x W^T + b with the thread-independent weight gradient; x (..., I), W (G, I)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):  # noqa: D102
        x, weight = ctx.saved_tensors
        dx = dy @ weight if ctx.needs_input_grad[0] else None  # (..., I)
        rows_dy = dy.reshape(-1, dy.shape[-1])  # (R, G)
        dw, db = fused_build.load_ops().weight_grad(rows_dy, x.reshape(-1, x.shape[-1]))
        return dx, dw, db


def _stable_ok(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Whether the stable path applies: CPU, float32/64, a bias, autocast off, library built."""
    if x.device.type != "cpu" or bias is None or x.dtype not in _DTYPES:
        return False
    if x.dtype != weight.dtype or torch.is_autocast_enabled("cpu"):
        return False
    if not torch.is_grad_enabled() or not weight.requires_grad:
        return False
    try:
        fused_build.load_ops()
    except fused_build.FusedBuildError:
        return False
    return True


class StableLinear(nn.Linear):
    """``nn.Linear`` with thread-count-independent weight and bias gradients on CPU."""

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) -> (..., out_features)."""
        if _stable_ok(x, self.weight, self.bias):
            return _StableLinearFn.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
