"""LMU: Legendre Memory Unit, a fixed linear memory that holds a sliding window of its input
in Legendre coefficients, read by a nonlinear hidden state.

Paper: Voelker, Kajic & Eliasmith 2019, "Legendre Memory Units: Continuous-Time
Representation in Recurrent Neural Networks", NeurIPS 2019,
https://papers.nips.cc/paper/9689-legendre-memory-units-continuous-time-representation-in-recurrent-neural-networks
(authors' code: github.com/nengo/keras-lmu, the paper's version at tag/branch neurips2019).

Equations (memory order d, window theta; the paper's eqs. 1-4):

    theta m'(t) = A m(t) + B u(t),   A_ij = (2i+1) * (-1 if i < j else (-1)^(i-j+1)),
                                     B_i  = (2i+1) (-1)^i,              i, j = 0..d-1
    discretized with zero-order hold, dt = 1: Abar = expm(A / theta),
                                              Bbar = (A / theta)^-1 (Abar - I) B / theta
    u_t = e_x . x_t + e_h . h_{t-1} + e_m . m_{t-1}                     (a scalar per row)
    m_t = Abar m_{t-1} + Bbar u_t
    h_t = tanh(W_x x_t + W_h h_{t-1} + W_m m_t)                         output y_t = h_t

Layout: ONE packed state ``hm`` = [h | m] (B, H + d); ``output_is_h`` is False (y_t = the
first H columns). Parameters:
``encoder_x`` e_x (I,), ``encoder_h`` e_h (H,), ``encoder_m`` e_m (d,), ``kernel_x`` W_x (H, I),
``kernel_h`` W_h (H, H), ``kernel_m`` W_m (H, d); buffers ``a_bar`` (d, d), ``b_bar`` (d,)
(fixed, as in the paper: not trained). ``input_projection`` = [x W_x^T | x . e_x], (T, B, H+1).
A recurrent-dropout mask (B, H) multiplies h where it enters u and W_h h; m is never masked.

theta defaults to the data's sequence length (``theta: null`` -> ``seq_len``, filled by the
model from the data like IndRNN's bound; 784 if unknown): the memory then spans the image.

Init (the paper's psMNIST model, nengo/keras-lmu neurips2019 ``experiments/psMNIST-standard``):
e_x = 1, e_h = 0, e_m = 0, W_x = 0, W_h = 0, W_m Glorot-normal; no biases. d = 256.

Fused kernel "lmu": a driver of its own (rnnzoo/engines/csrc/lmu.h). u is a scalar per row,
so the memory is written through Bbar u (rank one) and a step costs two GEMMs per row, d^2
(m Abar^T) and H (H + d) ([h | m_t] [W_h | W_m]^T) multiply-adds, where the step's one
linear map on [h | m] (``packed_matrix``) costs (H + d)^2 and a weight gradient as large;
Abar is constant, so backward has no d x d weight gradient (one training step at B = 128,
H = 128, d = 256, T = 784, 2 threads: 792 ms with the one packed matrix, 485 ms, measured).
``fused_params``
passes w_ih = [W_x ; e_x^T] (H + 1, I), no bias, w_hh = [W_h | W_m] (H, H + d) and extra =
[e_h, e_m, Bbar, Abar] (Abar, Bbar detached: constants); the kernel outputs the packed
state and the fused engine keeps its first H columns.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.registry import register_cell


def legendre_delay(order: int) -> tuple[Tensor, Tensor]:
    """The continuous (A (d, d), B (d,)) of the Legendre delay system, float64 (theta = 1)."""
    q = torch.arange(order, dtype=torch.float64)
    r = 2 * q + 1
    i, j = q[:, None], q[None, :]
    sign = torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    return sign * r[:, None], (-1.0) ** q * r


def zoh(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Zero-order-hold discretization with dt = 1: expm of the block matrix [[A, B], [0, 0]]
    holds Abar in its top-left block and Bbar in its top-right column."""
    d = a.shape[0]
    block = torch.zeros(d + 1, d + 1, dtype=a.dtype)
    block[:d, :d] = a
    block[:d, d] = b
    e = torch.linalg.matrix_exp(block)
    return e[:d, :d], e[:d, d]


@register_cell("lmu")
class LMUCell(RecurrentCell):
    """Legendre Memory Unit with a tanh hidden state, packed state [h | m].

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        order: d, the number of Legendre coefficients in the memory.
        theta: window length in steps; None = ``seq_len``.
        seq_len: the data's sequence length (the default theta); None = 784 (pixel MNIST).
    """

    state_names = ("hm",)
    output_is_h = False
    fused_kernel = "lmu"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        order: int = 256,
        theta: float | None = None,
        seq_len: int | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        seq_len = 784 if seq_len is None else seq_len
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        theta = float(seq_len if theta is None else theta)
        if not theta > 0:
            raise ValueError(f"theta must be > 0, got {theta}")
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.order, self.theta, self.seq_len = int(order), theta, int(seq_len)
        H, d, dtype = hidden_size, self.order, torch.get_default_dtype()
        self.encoder_x = nn.Parameter(torch.empty(input_size))
        self.encoder_h = nn.Parameter(torch.empty(H))
        self.encoder_m = nn.Parameter(torch.empty(d))
        self.kernel_x = nn.Parameter(torch.empty(H, input_size))
        self.kernel_h = nn.Parameter(torch.empty(H, H))
        self.kernel_m = nn.Parameter(torch.empty(H, d))
        a, b = legendre_delay(d)
        a_bar, b_bar = zoh(a / theta, b / theta)  # float64, then the default dtype
        self.register_buffer("a_bar", a_bar.to(dtype))
        self.register_buffer("b_bar", b_bar.to(dtype))
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size + self.order,)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.encoder_x.fill_(1.0)
        for p in (self.encoder_h, self.encoder_m, self.kernel_x, self.kernel_h):
            p.zero_()
        nn.init.xavier_normal_(self.kernel_m)

    def fused_mask(self, rec_mask: Tensor) -> Tensor:
        """The (B, H) mask in the packed layout (B, H + d): [mask | ones]."""
        ones = rec_mask.new_ones(rec_mask.shape[0], self.order)
        return torch.cat([rec_mask, ones], dim=1)

    def fused_params(self) -> FusedParams:
        w_ih = torch.cat([self.kernel_x, self.encoder_x[None]])  # (H + 1, I)
        bias = w_ih.new_zeros(w_ih.shape[0]).detach()  # no biases
        w_hh = torch.cat([self.kernel_h, self.kernel_m], dim=1)  # (H, H + d)
        constants = [self.b_bar.detach(), self.a_bar.detach().reshape(-1)]
        extra = torch.cat([self.encoder_h, self.encoder_m, *constants])
        return FusedParams("lmu", w_ih, bias, w_hh, extra)

    def fused_constant_recurrence(self) -> Tensor:
        """Abar (d, d): the recurrent product the kernel takes per step besides w_hh, with a
        constant matrix (no weight gradient); the benchmark's floor counts it."""
        return self.a_bar

    def packed_matrix(self) -> Tensor:
        """The step's linear map on [h_{t-1} | m_{t-1}] -> [h pre-activation | m_t] without the
        input (H + d, H + d): u, m_t and W_m m_t composed (what ``recurrent_matrices`` shows):

            [W_h + W_m Bbar e_h^T   W_m (Abar + Bbar e_m^T)]
            [Bbar e_h^T             Abar + Bbar e_m^T      ]
        """
        bu_h = torch.outer(self.b_bar, self.encoder_h)  # (d, H)  Bbar e_h^T
        m_m = self.a_bar + torch.outer(self.b_bar, self.encoder_m)  # (d, d)
        top = torch.cat([self.kernel_h + self.kernel_m @ bu_h, self.kernel_m @ m_m], dim=1)
        return torch.cat([top, torch.cat([bu_h, m_m], dim=1)])

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return {"packed": self.packed_matrix(), "A_bar": self.a_bar}

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, H + 1) = [x W_x^T | x . e_x]."""
        return torch.cat([x @ self.kernel_x.t(), (x @ self.encoder_x).unsqueeze(-1)], dim=-1)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (hm,) = state  # (B, H + d)
        H = self.hidden_size
        h, m = hm[:, :H], hm[:, H:]
        h_rec = h if rec_mask is None else h * rec_mask
        u = xp_t[:, H] + h_rec @ self.encoder_h + m @ self.encoder_m  # (B,)
        m = m @ self.a_bar.t() + u[:, None] * self.b_bar  # (B, d)
        h = torch.tanh(xp_t[:, :H] + h_rec @ self.kernel_h.t() + m @ self.kernel_m.t())
        return h, (torch.cat([h, m], dim=1),)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, order={self.order}, theta={self.theta:g}"
