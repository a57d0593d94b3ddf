"""Lipschitz RNN: a linear part plus a Lipschitz nonlinearity, with hidden-to-hidden matrices
built from symmetric and skew-symmetric parts so the continuous system is stable.

Paper: Erichson, Azencot, Queiruga, Hodgkinson & Mahoney 2021, "Lipschitz Recurrent Neural
Networks", ICLR 2021, https://arxiv.org/abs/2006.12070 (authors' code:
github.com/erichson/LipschitzRNN).

The ODE h' = A h + tanh(W h + U x + b), forward-Euler with step eps (the paper's eq. 3):

    A = beta (M_A - M_A^T) + (1 - beta) (M_A + M_A^T) - gamma I
    W = beta (M_W - M_W^T) + (1 - beta) (M_W + M_W^T) - gamma I
    h_t = h_{t-1} + eps A h_{t-1} + eps tanh(W h_{t-1} + U x_t + b)    output y_t = h_t

beta in [0, 1] trades the skew-symmetric part (oscillation, beta -> 1) against the
symmetric one; gamma > 0 shifts the spectrum left (damping).

Layout: ``weight_a`` M_A (H, H), ``weight_w`` M_W (H, H), ``weight_ih`` U (H, I), ``bias`` b
(H,). ``input_projection`` = x U^T + b, (T, B, H); ``step`` forms A and W from the parameters
(autograd flows back to M_A, M_W) and applies the update; a recurrent-dropout mask multiplies
h where it enters A h and W h (the carried h_{t-1} is not masked).

Init (the authors' code): M_A, M_W ~ N(0, (init_std / H)^2) -- their ``gaussian_init_`` uses
std = init_std / n_units -- U Xavier-normal, b = 0. Defaults are the authors' ordered-MNIST
command (README): beta 0.65, gamma 0.001, eps 0.01, init_std 32 (permuted: beta 0.8).

Fused kernel family "lipschitz": ONE recurrent GEMM of h with the stacked [A; W] (2H, H),
computed once per sequence in ``fused_params`` (with autograd); the input pre-activations are
kept apart (they only enter the tanh); extra = [eps] (a constant without gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells._sequence_cache import SequenceWeights
from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.registry import register_cell


@register_cell("lipschitz")
class LipschitzRNNCell(SequenceWeights, RecurrentCell):
    """Lipschitz RNN cell (Euler step of h' = A h + tanh(W h + U x + b)).

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        beta: weight of the skew-symmetric part of A and W, in [0, 1].
        gamma: diagonal shift -gamma I of A and W.
        eps: Euler step size.
        init_std: M_A and M_W are drawn from N(0, (init_std / H)^2).
    """

    fused_kernel = "lipschitz"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        beta: float = 0.65,
        gamma: float = 0.001,
        eps: float = 0.01,
        init_std: float = 32.0,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.beta, self.gamma, self.eps = float(beta), float(gamma), float(eps)
        self.init_std = float(init_std)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.weight_a = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.weight_w = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        std = self.init_std / self.hidden_size
        nn.init.normal_(self.weight_a, 0.0, std)
        nn.init.normal_(self.weight_w, 0.0, std)
        nn.init.xavier_normal_(self.weight_ih)
        self.bias.zero_()

    def _compose(self, m: Tensor) -> Tensor:
        """beta (M - M^T) + (1 - beta) (M + M^T) - gamma I, (H, H)."""
        eye = torch.eye(self.hidden_size, dtype=m.dtype, device=m.device)
        mt = m.t()
        return self.beta * (m - mt) + (1.0 - self.beta) * (m + mt) - self.gamma * eye

    def matrices(self) -> tuple[Tensor, Tensor]:
        """(A, W), each (H, H), built from M_A and M_W with autograd."""
        return self._compose(self.weight_a), self._compose(self.weight_w)

    def _form_weights(self) -> tuple[Tensor, Tensor]:
        return self.matrices()

    def fused_params(self) -> FusedParams:
        a, w = self.matrices()
        extra = torch.tensor([self.eps], dtype=self.bias.dtype, device=self.bias.device)
        return FusedParams("lipschitz", self.weight_ih, self.bias, torch.cat([a, w]), extra)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        a, w = self.matrices()
        return {"A": a, "W": w}

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, H) = x U^T + b; also forms A and W for this sequence's steps."""
        self._begin_sequence()  # A and W once per sequence, not per step
        return F.linear(x, self.weight_ih, self.bias)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h_rec = h if rec_mask is None else h * rec_mask
        a, w = self._sequence_weights()  # formed by input_projection
        lin = h_rec @ a.t()  # (B, H) = A h
        force = torch.tanh(torch.addmm(xp_t, h_rec, w.t()))  # (B, H)
        h = h + self.eps * (lin + force)
        return h, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, beta={self.beta}, gamma={self.gamma}, "
            f"eps={self.eps}, init_std={self.init_std}"
        )
