"""Echo State Network: a fixed random reservoir of leaky tanh units; only the readout learns.

Papers: Jaeger 2001, "The 'echo state' approach to analysing and training recurrent neural
networks", GMD Report 148, https://www.ai.rug.nl/minds/uploads/EchoStatesTechRep.pdf;
Jaeger & Haas 2004, "Harnessing Nonlinearity", Science 304(5667),
https://doi.org/10.1126/science.1091277; leaky units: Jaeger, Lukosevicius, Popovici &
Siewert 2007, https://doi.org/10.1016/j.neunet.2007.04.016; the recipe (scalings, density):
Lukosevicius 2012, "A Practical Guide to Applying Echo State Networks",
https://doi.org/10.1007/978-3-642-35289-8_36.

Equations as implemented (a = ``leak_rate``, a scalar in (0, 1]):

    h~_t = tanh(W_in x_t + b + W (h_{t-1} * mask))
    h_t  = (1 - a) h_{t-1} + a h~_t              output y_t = h_t, state (h_t,)

Nothing here learns: W_in, b and W are frozen parameters (requires_grad False, so the
trainer keeps them out of the optimizer and ``metrics.json`` counts them in ``params`` but
not in ``trainable_params``). The model's linear readout on the last state is the only
trained part. With no parameter needing a gradient, autograd records nothing through the
reservoir: the loop engine builds no graph and the fused engine keeps no per-step buffers,
so training costs one forward pass of the reservoir plus the readout (unless the input or
the initial state needs a gradient, e.g. ``learn_init`` or a trained layer below).

Layout: ``weight_ih`` W_in (H, I), ``bias`` b (H,), ``weight_hh`` W (H, H), all frozen.
``input_projection`` = x W_in^T + b, (T, B, H). The fused kernel family is "leaky" (shared
with the ``leaky`` cell): w_ih = W_in, bias = b, w_hh = W, extra = a repeated (H,).

Init (the reservoir is drawn once, from torch's generator, so ``seed`` fixes it):

- W: each entry nonzero with probability 1 - ``sparsity`` (``sparsity`` is the fraction of
  zero weights, e.g. 0.9 keeps 10 % of the connections), nonzero values U(-1, 1), then
  scaled so that its spectral radius (largest |eigenvalue|) is ``spectral_radius`` (< 1 is
  the usual echo-state heuristic). A reservoir with no nonzero eigenvalue stays unscaled.
- W_in and b: U(-``input_scaling``, ``input_scaling``), dense (b is W_in's bias column).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.cells.base import FusedParams, RecurrentCell, State
from rnnzoo.cells.leaky import leaky_step
from rnnzoo.registry import register_cell


@register_cell("esn")
class EchoStateCell(RecurrentCell):
    """Leaky echo state reservoir with frozen random weights.

    Args:
        input_size: I, width of x_t.
        hidden_size: H, reservoir size.
        spectral_radius: largest |eigenvalue| of W after scaling, > 0.
        sparsity: fraction of W's entries that are zero, in [0, 1).
        input_scaling: W_in and b are U(-input_scaling, input_scaling), > 0.
        leak_rate: a in (0, 1]; 1 is a non-leaky reservoir.
    """

    fused_kernel = "leaky"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        spectral_radius: float = 0.9,
        sparsity: float = 0.9,
        input_scaling: float = 0.2,
        leak_rate: float = 0.2,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if not spectral_radius > 0.0:
            raise ValueError(f"spectral_radius must be > 0, got {spectral_radius}")
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity (zero fraction) must be in [0, 1), got {sparsity}")
        if not input_scaling > 0.0:
            raise ValueError(f"input_scaling must be > 0, got {input_scaling}")
        if not 0.0 < leak_rate <= 1.0:
            raise ValueError(f"leak_rate must be in (0, 1], got {leak_rate}")
        self.spectral_radius = float(spectral_radius)
        self.sparsity = float(sparsity)
        self.input_scaling = float(input_scaling)
        self.leak_rate = float(leak_rate)
        frozen = {"requires_grad": False}
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size), **frozen)
        self.bias = nn.Parameter(torch.empty(hidden_size), **frozen)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size), **frozen)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        s, H = self.input_scaling, self.hidden_size
        nn.init.uniform_(self.weight_ih, -s, s)
        nn.init.uniform_(self.bias, -s, s)
        w = torch.empty(H, H, dtype=torch.float64).uniform_(-1.0, 1.0)
        w *= torch.rand(H, H, dtype=torch.float64) >= self.sparsity  # keep 1 - sparsity
        radius = torch.linalg.eigvals(w).abs().max().item()
        if radius > 0.0:
            w *= self.spectral_radius / radius
        self.weight_hh.copy_(w)

    def fused_params(self) -> FusedParams:
        rate = self.weight_hh.new_full((self.hidden_size,), self.leak_rate)
        return FusedParams("leaky", self.weight_ih, self.bias, self.weight_hh, rate)

    def recurrent_matrices(self) -> dict[str, Tensor]:
        return {"W_hh": self.weight_hh}

    def input_projection(self, x: Tensor) -> Tensor:
        """(T, B, I) -> (T, B, H) = x W_in^T + b."""
        return F.linear(x, self.weight_ih, self.bias)

    def step(
        self, xp_t: Tensor, state: State, rec_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h = leaky_step(xp_t, h, self.weight_hh, self.leak_rate, rec_mask)
        return h, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, spectral_radius={self.spectral_radius}, "
            f"sparsity={self.sparsity}, input_scaling={self.input_scaling}, "
            f"leak_rate={self.leak_rate}"
        )
