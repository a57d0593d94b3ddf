"""LRU: the Linear Recurrent Unit, a complex diagonal linear recurrence with a stable
exponential parameterization, ring initialization and input normalization.

Paper: Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023, "Resurrecting Recurrent
Neural Networks for Long Sequences", https://arxiv.org/abs/2303.06349 (Sec. 3 and the
JAX pseudo-code of Appendix A).

Equations as implemented (complex state h_t in C^H, * = element-wise, x_t in R^I):

    lambda = exp(-exp(nu_log) + i exp(theta_log))          (H,), |lambda| < 1 always
    gamma  = exp(gamma_log)                                (H,)
    h_t    = lambda * h_{t-1} + gamma * ((B_re + i B_im) x_t)
    o_t    = Re((C_re + i C_im) h_t) + D x_t               (H,), real
    y_t    = o_t, or with ``block="glu"`` (default) the paper's layer around the LRU:
             LayerNorm(x_t + GLU(GELU(o_t))) (residual only when I == H), see
             ``rnnzoo.cells.linear_recurrence``.

D is the paper's diagonal (H,) when I == H, and a dense (H, I) skip map otherwise (the
first layer reads 1 pixel; the paper puts a linear encoder there instead).

State: (h,) with h stored real as [Re h | Im h], (B, 2H), zero by default; the hidden
size H is both the number of complex state units and the output width.

Layout: ``nu_log``, ``theta_log``, ``gamma_log`` (H,); ``B_re``, ``B_im`` (H, I);
``C_re``, ``C_im`` (H, H); ``D`` (H,) or (H, I). ``input_projection`` = one matmul x W^T with
W = [gamma * B_re; gamma * B_im] (2H, I), and x appended for the output: (T, B, 2H + I).

Init (the paper's Appendix A): lambda uniform on the ring r_min <= |lambda| <= r_max
(uniform in area: |lambda|^2 ~ U(r_min^2, r_max^2)) with phase ~ U(0, max_phase);
gamma_log = log sqrt(1 - |lambda|^2) (then trained); B_re, B_im ~ N(0, 1 / (2 I));
C_re, C_im ~ N(0, 1 / H); D ~ N(0, 1) (dense: N(0, 1 / I)). The authors' code defaults to
the full disk (r_min = 0, r_max = 1, max_phase = 2 pi); the paper moves the ring towards 1
for long sequences (Sec. 3.3). Defaults here, for 784-step sequences: r_min = 0.9,
r_max = 0.999, max_phase = 2 pi.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams
from rnnzoo.cells.linear_recurrence import (
    GLUBlock,
    LinearRecurrenceCell,
    Recurrence,
    check_block,
)
from rnnzoo.registry import register_cell


@register_cell("lru")
class LRUCell(LinearRecurrenceCell):
    """Linear Recurrent Unit with an optional GLU output block.

    Args:
        input_size: I, width of x_t.
        hidden_size: H, complex state units and output width.
        r_min: smallest |lambda| at init, in [0, 1).
        r_max: largest |lambda| at init, in (r_min, 1].
        max_phase: phases at init are drawn from U(0, max_phase), > 0.
        block: "glu" (default, the paper's layer) or "none" (y_t = o_t).
    """

    complex_state = True
    fused_kernel = "lru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
        block: str = "glu",
    ) -> None:
        super().__init__(input_size, hidden_size)
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(f"need 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
        if not max_phase > 0.0:
            raise ValueError(f"max_phase must be > 0, got {max_phase}")
        self.r_min, self.r_max, self.max_phase = float(r_min), float(r_max), float(max_phase)
        self.block_kind = check_block(block)
        self.output_is_h = False
        H, n_in = hidden_size, input_size
        self.nu_log = nn.Parameter(torch.empty(H))
        self.theta_log = nn.Parameter(torch.empty(H))
        self.gamma_log = nn.Parameter(torch.empty(H))
        self.B_re = nn.Parameter(torch.empty(H, n_in))
        self.B_im = nn.Parameter(torch.empty(H, n_in))
        self.C_re = nn.Parameter(torch.empty(H, H))
        self.C_im = nn.Parameter(torch.empty(H, H))
        self.D = nn.Parameter(torch.empty(H) if n_in == H else torch.empty(H, n_in))
        self.block = None
        if self.block_kind == "glu":
            self.block = GLUBlock(H, residual=n_in == H)
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (2 * self.hidden_size,)  # [Re h | Im h]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        H, n_in = self.hidden_size, self.input_size
        u1 = torch.rand(H, dtype=self.nu_log.dtype)
        u2 = torch.rand(H, dtype=self.nu_log.dtype).clamp_min(1e-6)  # log(0) guard
        r_sq = u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2  # |lambda|^2, uniform
        self.nu_log.copy_(torch.log(-0.5 * torch.log(r_sq)))  # |lambda| = exp(-exp(nu_log))
        self.theta_log.copy_(torch.log(self.max_phase * u2))
        self.gamma_log.copy_(0.5 * torch.log1p(-r_sq))  # log sqrt(1 - |lambda|^2)
        nn.init.normal_(self.B_re, 0.0, 1.0 / math.sqrt(2 * n_in))
        nn.init.normal_(self.B_im, 0.0, 1.0 / math.sqrt(2 * n_in))
        nn.init.normal_(self.C_re, 0.0, 1.0 / math.sqrt(H))
        nn.init.normal_(self.C_im, 0.0, 1.0 / math.sqrt(H))
        nn.init.normal_(self.D, 0.0, 1.0 if self.D.dim() == 1 else 1.0 / math.sqrt(n_in))
        if self.block is not None:
            self.block.glu.reset_parameters()
            self.block.norm.reset_parameters()

    def lam(self) -> Tensor:
        """lambda = exp(-exp(nu_log) + i exp(theta_log)), complex (H,)."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def fused_params(self) -> FusedParams:
        """The recurrence only (the kernel returns [Re h | Im h]; output_map does the rest):
        w_ih = [gamma * B_re; gamma * B_im] (2H, I), no bias, extra = [Re lambda | Im lambda]."""
        gamma = torch.exp(self.gamma_log).unsqueeze(1)  # (H, 1)
        w = torch.cat([gamma * self.B_re, gamma * self.B_im])  # (2H, I)
        mod, phase = torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log)
        lam = torch.cat([mod * torch.cos(phase), mod * torch.sin(phase)])  # (2H,)
        return FusedParams("lru", w, w.new_zeros(w.shape[0]), None, lam)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return {"lambda": self.lam()}  # the (complex) diagonal of the recurrence

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, 2H + I): [gamma * B_re x | gamma * B_im x | x]."""
        gamma = torch.exp(self.gamma_log).unsqueeze(1)  # (H, 1)
        w = torch.cat([gamma * self.B_re, gamma * self.B_im])  # (2H, I)
        return torch.cat([F.linear(x, w), x], dim=-1)

    def recurrence(self, xp: Tensor) -> Recurrence:
        """a = lambda (H,), b = gamma * B x_t (T, B, H), complex."""
        H = self.hidden_size
        return Recurrence(self.lam(), torch.complex(xp[..., :H], xp[..., H : 2 * H]), False)

    def input_of(self, xp: Tensor) -> Tensor:
        """x, the tail of xp (..., I)."""
        return xp[..., 2 * self.hidden_size :]

    def output_map(self, x: Tensor, hs: Tensor) -> Tensor:
        """o = Re(C h) + D x, then the block: (T, B, I), (T, B, 2H) -> (T, B, H)."""
        c = torch.cat([self.C_re, -self.C_im], dim=1)  # Re(C h) = C_re h_re - C_im h_im
        skip = x * self.D if self.D.dim() == 1 else F.linear(x, self.D)
        o = F.linear(hs, c) + skip  # (T, B, H)
        return o if self.block is None else self.block(o, x)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, r=[{self.r_min}, {self.r_max}], "
            f"max_phase={self.max_phase:.4g}, block={self.block_kind}"
        )
