"""expRNN: an RNN whose recurrent matrix is orthogonal by construction, W = expm(A) with A
skew-symmetric, and the modReLU nonlinearity.

Paper: Lezcano-Casado & Martinez-Rubio 2019, "Cheap Orthogonal Constraints in Neural
Networks: A Simple Parametrization of the Orthogonal and Unitary Group", ICML 2019,
https://arxiv.org/abs/1901.08428 (authors' code: github.com/Lezcano/expRNN). modReLU: Arjovsky,
Shah & Bengio 2016, https://arxiv.org/abs/1511.06464.

Equations as implemented:

    A = triu(P, 1) - triu(P, 1)^T            skew-symmetric, from the free parameter P
    W = expm(A)                              orthogonal (special orthogonal), once per forward
    z_t = T x_t + W h_{t-1}
    h_t = modrelu(z_t) = sign(z_t) * relu(|z_t| + b)      output y_t = h_t

Layout: ``weight_ih`` T (H, I) (no input bias, as the authors' code), ``log_recurrent`` P
(H, H) (only its strict upper triangle is used), ``bias`` b (H,), the modReLU bias.
``input_projection`` = x T^T, (T, B, H), and it forms W = expm(A) once for the sequence's
steps (``skew_expm``: through the eigendecomposition of the Hermitian iA, with the exact
adjoint Frechet derivative as its backward); ``step`` adds (h * mask) W^T and applies
modReLU. The fused engine builds W in ``fused_params`` instead.

Init (the authors' code): T Kaiming-normal for relu (std sqrt(2 / I)); b ~ U(-0.01, 0.01); A
block-diagonal with 2x2 blocks [[0, s], [-s, 0]] (odd H: a last zero row/column), either
``cayley`` (s = -sqrt((1 - cos t) / (1 + cos t)), t ~ U(0, pi/2): W's eigenvalue angles
cover [-pi/2, pi/2], the authors' default for MNIST) or ``henaff`` (s ~ U(-pi, pi), Henaff
et al. 2016). The authors train P with its own learning rate (RMSprop, lr/10); rnnzoo's
optimizer has one, so ``skew_scale`` c parametrizes A = c * (triu(P) - triu(P)^T): for Adam
and RMSprop (invariant to gradient scale) that makes A's effective learning rate c * lr.

Fused kernel family "modrelu": Elman's GEMM with the orthogonal W, the modReLU element-wise
(extra = b, with its gradient).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells._sequence_cache import SequenceWeights
from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.registry import register_cell

SKEW_INITS = ("cayley", "henaff")


class _SkewExpm(torch.autograd.Function):
    """W = expm(A) for a real skew-symmetric A (H, H), with the exact gradient.

    A is normal: iA is Hermitian, iA = Q diag(lam) Q^H (``eigh``, real lam), so A's
    eigenvalues are mu = -i lam and W = Q diag(e^mu) Q^H (real up to rounding). The backward is
    the adjoint Frechet derivative (Daleckii-Krein): dA = Re(Q (conj(Phi) o (Q^H dW Q)) Q^H),
    Phi_jk = (e^mu_j - e^mu_k) / (mu_j - mu_k) = e^((mu_j + mu_k) / 2) sinc((lam_j - lam_k) / 2)
    with sinc(x) = sin(x) / x, and e^mu_j where the eigenvalues coincide (the sinc form holds
    there too, so degenerate pairs, as in the block init, need no special case; any
    orthonormal eigenbasis gives the same W and dA).

    Why not torch.linalg.matrix_exp: its backward exponentiates the (2H, 2H) block
    [[A^T, dW], [0, A^T]] with as many squarings as dW's norm asks for, one multithreaded
    small GEMM at a time; at H = 128 on a loaded 2-core CPU that took 26 ms per training step
    at one thread and 0.1-0.8 s at two (this: 10 and 13 ms), and it is less accurate in
    float32 (gradient error 1e-2 vs 2e-5 against float64 at |dA| ~ 100).
    """

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        cdtype = torch.complex128 if a.dtype == torch.float64 else torch.complex64
        lam, q = torch.linalg.eigh(1j * a.to(cdtype))  # (H,), (H, H)
        e = torch.exp(-1j * lam)  # e^mu
        ctx.save_for_backward(lam, q)
        return ((q * e) @ q.mH).real.to(a.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        lam, q = ctx.saved_tensors
        half_sum = (lam[:, None] + lam[None, :]) / 2
        half_diff = (lam[:, None] - lam[None, :]) / 2
        phi_conj = torch.exp(1j * half_sum) * torch.sinc(half_diff / math.pi)  # conj(Phi)
        inner = q.mH @ grad.to(q.dtype) @ q
        return (q @ (phi_conj * inner) @ q.mH).real.to(grad.dtype)


def skew_expm(a: Tensor) -> Tensor:
    """expm(A) (H, H) of a real skew-symmetric A, differentiable (see ``_SkewExpm``)."""
    return _SkewExpm.apply(a)


def modrelu(z: Tensor, b: Tensor) -> Tensor:
    """sign(z) * relu(|z| + b), element-wise; b broadcasts over the batch."""
    return torch.sign(z) * torch.relu(z.abs() + b)


@torch.no_grad()
def skew_block_init_(p: Tensor, kind: str, scale: float = 1.0) -> Tensor:
    """Fill (H, H) ``p`` with the block-diagonal skew-symmetric init / ``scale`` (in place)."""
    if kind not in SKEW_INITS:
        raise ValueError(f"unknown skew_init {kind!r}; valid: {', '.join(SKEW_INITS)}")
    n = p.shape[0]
    k = n // 2
    if kind == "cayley":
        t = torch.empty(k, dtype=torch.float64).uniform_(0.0, math.pi / 2)
        s = -torch.sqrt((1.0 - torch.cos(t)) / (1.0 + torch.cos(t)))
    else:
        s = torch.empty(k, dtype=torch.float64).uniform_(-math.pi, math.pi)
    a = torch.zeros(n, n, dtype=torch.float64)
    idx = torch.arange(k) * 2
    a[idx, idx + 1] = s
    a[idx + 1, idx] = -s
    return p.copy_(a / scale)


@register_cell("exprnn")
class ExpRNNCell(SequenceWeights, RecurrentCell):
    """expRNN cell: orthogonal W = expm(skew A), modReLU.

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        skew_init: "cayley" or "henaff" (the block-diagonal init of A).
        skew_scale: c in A = c (triu(P) - triu(P)^T); c < 1 slows A's learning by c (Adam,
            RMSprop), the authors' separate orthogonal learning rate.
    """

    fused_kernel = "modrelu"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        skew_init: str = "cayley",
        skew_scale: float = 1.0,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if skew_init not in SKEW_INITS:
            raise ValueError(f"unknown skew_init {skew_init!r}; valid: {', '.join(SKEW_INITS)}")
        if not skew_scale > 0:
            raise ValueError(f"skew_scale must be > 0, got {skew_scale}")
        self.skew_init = skew_init
        self.skew_scale = float(skew_scale)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.log_recurrent = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.weight_ih, nonlinearity="relu")
        skew_block_init_(self.log_recurrent, self.skew_init, self.skew_scale)
        nn.init.uniform_(self.bias, -0.01, 0.01)

    def skew(self) -> Tensor:
        """A (H, H), skew-symmetric, from the strict upper triangle of P."""
        upper = self.log_recurrent.triu(1)
        return self.skew_scale * (upper - upper.t())

    def recurrent_weight(self) -> Tensor:
        """W = expm(A) (H, H), orthogonal, differentiable in P."""
        return skew_expm(self.skew())

    def _form_weights(self) -> Tensor:
        return self.recurrent_weight()

    def fused_params(self) -> FusedParams:
        w = self.recurrent_weight()  # once per forward
        zeros = torch.zeros_like(self.bias, requires_grad=False)  # no input bias
        return FusedParams("modrelu", self.weight_ih, zeros, w, self.bias)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return {"W": self.recurrent_weight()}

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, H) = x T^T; forms W = expm(A) for this sequence's steps."""
        self._begin_sequence()
        return F.linear(x, self.weight_ih)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h_rec = h if rec_mask is None else h * rec_mask
        w = self._sequence_weights()  # formed by input_projection
        h = modrelu(torch.addmm(xp_t, h_rec, w.t()), self.bias)  # (B, H)
        return h, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, skew_init={self.skew_init}, "
            f"skew_scale={self.skew_scale}"
        )
