"""coRNN: coupled oscillatory RNN, a network of damped, driven nonlinear oscillators.

Paper: Rusch & Mishra 2021, "Coupled Oscillatory Recurrent Neural Network (coRNN): An
accurate and (gradient) stable architecture for learning long time dependencies", ICLR 2021,
https://arxiv.org/abs/2010.00951 (authors' code: github.com/tk-rusch/coRNN).

The ODE y'' = tanh(W y + Wz y' + V u + b) - gamma y - epsilon y', written as a first-order
system in (y, z = y') and discretized with step dt (the paper's IMEX scheme, eq. 3, with the
damping explicit, n-bar = n-1, as the authors' code does):

    z_t = z_{t-1} + dt * (tanh(W y_{t-1} + Wz z_{t-1} + V x_t + b) - gamma y_{t-1} - eps z_{t-1})
    y_t = y_{t-1} + dt * z_t                                   output y_t, readout from y

Layout: ONE packed state tensor ``yz`` = [y | z] (B, 2H), so the recurrent part is one GEMM
with K = 2H: ``weight_hh`` = [W | Wz] (H, 2H) times [y | z]. ``weight_ih`` V (H, I),
``bias`` b (H,); ``input_projection`` = x V^T + b, (T, B, H). The output y_t (B, H) is the
first half of the state, so ``output_is_h`` is False. A recurrent-dropout mask (B, H) drops
unit j's y and z together where they enter the GEMM (``fused_mask`` = [mask | mask]); the
carried y, z and the damping terms are not masked.

Init (the authors' one ``nn.Linear(I + 2H, H)`` over [x, z, y]): every weight and the bias
U(-1/sqrt(I + 2H), 1/sqrt(I + 2H)). dt, gamma, epsilon are fixed hyperparameters; the defaults
are the authors' sMNIST values (dt 0.042, gamma 2.7, epsilon 4.7; psMNIST: 0.076, 0.4, 8.0).

Fused kernel family "cornn": the GEMM gives pre = [y|z] [W|Wz]^T + x V^T + b, the element-wise
pass the two updates above (extra = [dt, gamma, epsilon], constants without gradients).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.registry import register_cell


@register_cell("cornn")
class CoRNNCell(RecurrentCell):
    """coRNN cell with the packed state [y | z].

    Args:
        input_size: I, width of x_t.
        hidden_size: H, number of oscillators (width of y and of z).
        dt: time step of the discretization.
        gamma: stiffness (restoring force on y).
        epsilon: damping (on z = y').
    """

    state_names = ("yz",)
    output_is_h = False
    fused_kernel = "cornn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        dt: float = 0.042,
        gamma: float = 2.7,
        epsilon: float = 4.7,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        self.dt, self.gamma, self.epsilon = float(dt), float(gamma), float(epsilon)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, 2 * hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (2 * self.hidden_size,)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.input_size + 2 * self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias):
            nn.init.uniform_(p, -bound, bound)

    def fused_mask(self, rec_mask: Tensor) -> Tensor:
        """The (B, H) recurrent-dropout mask in the packed layout (B, 2H): [mask | mask]."""
        return torch.cat([rec_mask, rec_mask], dim=1)

    def fused_params(self) -> FusedParams:
        consts = torch.tensor(
            [self.dt, self.gamma, self.epsilon], dtype=self.bias.dtype, device=self.bias.device
        )
        return FusedParams("cornn", self.weight_ih, self.bias, self.weight_hh, consts)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        W, Wz = self.weight_hh.chunk(2, dim=1)
        return {"W": W, "Wz": Wz}

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, H) = x V^T + b."""
        return F.linear(x, self.weight_ih, self.bias)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (yz,) = state  # (B, 2H)
        H = self.hidden_size
        y, z = yz[:, :H], yz[:, H:]
        yz_rec = yz if rec_mask is None else yz * self.fused_mask(rec_mask)  # [y*m | z*m]
        force = torch.tanh(torch.addmm(xp_t, yz_rec, self.weight_hh.t()))  # (B, H)
        z = z + self.dt * (force - self.gamma * y - self.epsilon * z)
        y = y + self.dt * z
        return y, (torch.cat([y, z], dim=1),)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, dt={self.dt}, gamma={self.gamma}, "
            f"epsilon={self.epsilon}"
        )
