"""Leaky-integrator tanh units: each unit mixes its old state with a new tanh activation at
its own rate, so the layer holds several time scales at once.

Papers: Mozer 1992, "Induction of Multiscale Temporal Structure", NIPS 4,
https://papers.nips.cc/paper/1991/hash/53fde96fcc4b4ce72d7739202324cd49-Abstract.html;
Jaeger, Lukosevicius, Popovici & Siewert 2007, "Optimization and applications of echo state
networks with leaky-integrator neurons", Neural Networks 20(3),
https://doi.org/10.1016/j.neunet.2007.04.016.

Equations as implemented (* = element-wise, a a vector (H,) with every a_j in (0, 1)):

    h~_t = tanh(W x_t + b + U (h_{t-1} * mask))
    h_t  = (1 - a) * h_{t-1} + a * h~_t          output y_t = h_t, state (h_t,)

a_j = 1 is a plain tanh RNN unit; a small a_j integrates over about 1 / a_j steps. The
recurrent-dropout mask multiplies h only inside the product U h; the leak term (1 - a) h
carries the unmasked state.

Layout: ``weight_ih`` W (H, I), ``weight_hh`` U (H, H), ``bias`` b (H,), ``rate_logit`` (H,)
with a = sigmoid(rate_logit), so a stays in (0, 1) whatever the optimizer does.
``input_projection`` = x W^T + b, (T, B, H). With ``learn_rate=False`` the rates are fixed:
``rate_logit`` is a frozen parameter (requires_grad False, kept out of the optimizer).
The fused kernel family is "leaky" (rnnzoo/engines/csrc): w_ih = W, bias = b, w_hh = U,
extra = a (H,), built from ``rate_logit`` with autograd so its gradient flows back.

Init: a log-uniform in [``min_rate``, ``max_rate``] (log a ~ U(log min_rate, log max_rate):
time scales 1/a spread evenly on a log axis, as Mozer's multiscale units); U orthogonal
(as the ``rnn`` cell); W U(-1/sqrt(H), 1/sqrt(H)) (torch's default); b = 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.cells.init import uniform_fan_
from rnnzoo.registry import register_cell


def leaky_step(
    xp_t: Tensor, h: Tensor, weight_hh: Tensor, rate: Tensor | float, rec_mask: Tensor | None
) -> Tensor:
    """h_t = (1 - a) h_{t-1} + a tanh(xp_t + (h_{t-1} * mask) U^T) for (B, H) tensors; ``rate``
    a (H,) vector or a float. Shared by the ``leaky`` and ``esn`` cells."""
    h_rec = h if rec_mask is None else h * rec_mask
    new = torch.addmm(xp_t, h_rec, weight_hh.t()).tanh()  # (B, H)
    return torch.addcmul(h, new - h, rate) if isinstance(rate, Tensor) else h + rate * (new - h)


@register_cell("leaky")
class LeakyCell(RecurrentCell):
    """Leaky-integrator tanh RNN with one rate per unit.

    Args:
        input_size: I, width of x_t.
        hidden_size: H, width of h_t.
        min_rate: smallest initial rate a (longest time scale), in (0, 1).
        max_rate: largest initial rate a (shortest time scale), in [min_rate, 1).
        learn_rate: train the rates (through their logits) or keep them fixed.
    """

    fused_kernel = "leaky"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        min_rate: float = 0.01,
        max_rate: float = 0.9,
        learn_rate: bool = True,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if not 0.0 < min_rate <= max_rate < 1.0:
            raise ValueError(
                f"need 0 < min_rate <= max_rate < 1 (rates live in (0, 1)), got "
                f"min_rate={min_rate}, max_rate={max_rate}"
            )
        self.min_rate = float(min_rate)
        self.max_rate = float(max_rate)
        self.learn_rate = bool(learn_rate)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.rate_logit = nn.Parameter(torch.empty(hidden_size), requires_grad=self.learn_rate)
        self.reset_parameters()

    @property
    def rate(self) -> Tensor:
        """a = sigmoid(rate_logit), (H,), every entry in (0, 1)."""
        return torch.sigmoid(self.rate_logit)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        H = self.hidden_size
        lo, hi = math.log(self.min_rate), math.log(self.max_rate)
        rate = torch.empty(H, dtype=torch.float64).uniform_(lo, hi).exp()  # log-uniform
        self.rate_logit.copy_(torch.log(rate) - torch.log1p(-rate))  # logit(a)
        nn.init.orthogonal_(self.weight_hh)
        uniform_fan_(self.weight_ih, hidden_size=H)
        self.bias.zero_()

    def fused_params(self) -> FusedParams:
        return FusedParams("leaky", self.weight_ih, self.bias, self.weight_hh, self.rate)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        # h_t = (1 - a) h_{t-1} + a tanh(.. + U h_{t-1}): the leak diagonal and U
        return {"W_hh": self.weight_hh, "1-a": 1.0 - self.rate}

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, H) = x W^T + b."""
        return F.linear(x, self.weight_ih, self.bias)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h = leaky_step(xp_t, h, self.weight_hh, self.rate, rec_mask)
        return h, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, rate=[{self.min_rate}, {self.max_rate}], "
            f"learn_rate={self.learn_rate}"
        )
