"""Gradient flow through time: ||dL/dh_t|| for every step t and layer.

Why cells differ on 784-step sMNIST: the loss reaches step t through the product of the
per-step Jacobians dh_{s+1}/dh_s for s = t..T-1, so ||dL/dh_t|| shrinks (or grows) roughly
geometrically in T - t, at a rate set by the recurrent matrix (spectral radius, largest
singular value) and the activations; gates and identity / orthogonal inits are the cures.

How it is measured (any cell, any device; ``rnnzoo.report.probe``): the model runs with the
``loop`` engine in float64, every step's new state h_t is kept, and one backward of the summed
cross-entropy L = sum_i CE(logits_i, y_i) gives dL/dh_t (``torch.autograd.grad`` with the h_t
as inputs: the total gradient through every use of h_t). Sequences do not
interact (eval mode), so row i is sequence i's own gradient; the curve is

    g_t = mean_i ||dL_i/dh_t^i||_2          (per layer and direction, t = 1..T)

Range: a tanh RNN with gain 0.5 loses ~0.3 decades per step, beyond 1e-308 (float64) within
~1000 steps. So the backward pass may scale the gradient entering every previous state by a
constant c: each of the T - t steps back to h_t multiplies by c, so h_t receives
c^(T - t) g_t, and log10 g_t = log10(measured) - (T - t) log10 c exactly. c starts at 1; if
any step underflowed (or overflowed), c is set from the decay rate seen on the representable
steps and the pass repeats (at most ``MAX_PASSES`` times). Every path from the loss to h_t
crosses exactly T - t recurrent steps in a one-directional stack; a bidirectional one mixes
paths, so it keeps c = 1 (float64 only).

``first_over_last`` = g_1 / g_T, reported as log10 (always finite unless a gradient is exactly
zero) and as a float (0.0 below float64's range). For cells whose output is computed from
h_{t-1} (+RNN) h_T never reaches the loss; "last" is then the latest step with a non-zero
gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from rnnzoo.report.probe import layer_names, probe

MAX_PASSES = 4
#: measured norms outside [TINY, HUGE] are not trusted (subnormal or close to overflow)
TINY, HUGE = 1e-250, 1e250


@dataclass
class GradFlow:
    """||dL/dh_t|| per layer, as log10 (T,) float64 arrays (``-inf`` where exactly zero).

    Attributes:
        layers: layer names ("layer0", "layer0.reverse", ...), one per cell.
        log10_norms: per layer, log10 g_t for t = 1..T.
        log10_scale: log10 c of the pass that produced the numbers.
        passes: backward passes it took.
    """

    layers: list[str]
    log10_norms: list[np.ndarray]
    log10_scale: float
    passes: int

    def last_step(self, k: int) -> int | None:
        """0-based index of the latest step with a non-zero gradient in layer ``k``."""
        finite = np.flatnonzero(np.isfinite(self.log10_norms[k]))
        return int(finite[-1]) if finite.size else None

    def log10_first_over_last(self, k: int) -> float:
        """log10(g_1 / g_last) for layer ``k`` (nan when no step gets a gradient)."""
        last = self.last_step(k)
        if last is None:
            return math.nan
        return float(self.log10_norms[k][0] - self.log10_norms[k][last])

    def first_over_last(self, k: int) -> float:
        """g_1 / g_last as a float (0.0 when it is below float64's range; see the log10)."""
        value = self.log10_first_over_last(k)
        if math.isnan(value):
            return math.nan
        return 10.0**value if value > -307.0 else 0.0


def grad_flow(model: nn.Module, x: Tensor, y: Tensor) -> GradFlow:
    """Measure ||dL/dh_t|| for every step and layer.

    Args:
        model: a sequence classifier built with the ``loop`` engine, in eval mode, float64
            (see ``rnnzoo.report.probe.loop_copy``).
        x: input (T, B, I); cast to the model's dtype.
        y: labels (B,).

    Returns:
        The curves, log10 per layer.
    """
    names = layer_names(model)
    scalable = not model.model_args().get("bidirectional")
    ref = next(model.parameters())
    # x requires grad so every h_t is in the graph, even with frozen weights (echo state nets)
    x = x.to(device=ref.device, dtype=ref.dtype).detach().requires_grad_(True)
    y = y.to(ref.device)
    log2c = 0.0
    for passes in range(1, MAX_PASSES + 1):
        measured = _measure(model, x, y, 2.0**log2c)  # per layer (T,) float64, scaled
        step = _rescale_bits(measured) if scalable else None
        if step is None or passes == MAX_PASSES:
            break
        log2c += step
    log10c = log2c * math.log10(2.0)
    with np.errstate(divide="ignore"):
        # hops T_l - t per layer: a dilated layer (time-to-batch) runs T/d cell steps
        curves = [np.log10(m) - _hops(len(m)) * log10c for m in measured]
    return GradFlow(names, curves, log10c, passes)


def _hops(n: int) -> np.ndarray:
    """n - t for t = 1..n: how many scaled steps lie between step t and the last one."""
    return np.arange(n - 1, -1, -1, dtype=np.float64)


def _measure(model: nn.Module, x: Tensor, y: Tensor, scale: float) -> list[np.ndarray]:
    """One forward/backward: mean over the batch of ||dL/dh_t|| (times c^(T-t)) per step and
    layer."""
    with torch.enable_grad(), probe(model, grad=True, grad_scale=scale) as records:
        logits, _ = model(x)  # (B, C)
        loss = -logits.log_softmax(-1).gather(1, y[:, None]).sum()  # summed cross-entropy
        hs = [h for rec in records for h in rec.probes]
        live = [h for h in hs if h.requires_grad]  # a state no parameter reaches has none
        found = iter(torch.autograd.grad(loss, live, allow_unused=True) if live else ())
        grads = [next(found) if h.requires_grad else None for h in hs]
    out, i = [], 0
    for rec in records:
        n = len(rec.probes)
        norms = [
            torch.zeros((), dtype=torch.float64) if g is None else row_norms(g).mean()
            for g in grads[i : i + n]
        ]
        out.append(torch.stack(norms).detach().double().cpu().numpy())  # (T,)
        i += n
    return out


def row_norms(g: Tensor) -> Tensor:
    """||g_i||_2 per row of (B, K) without underflow: squaring 1e-200 gives 0 in float64, so
    each row is divided by its largest |entry| first."""
    g = g.flatten(1)
    peak = g.abs().amax(dim=1)  # (B,)
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return peak * (g / safe[:, None]).norm(dim=1)  # (B,)


def _rescale_bits(measured: list[np.ndarray]) -> float | None:
    """Change of log2 c that would flatten the steepest layer, or None if all is in range.

    Out of range: a norm above HUGE, or, walking back from the last step, a norm that left
    the range through a tiny positive value (underflow). A jump from in range straight to an
    exact zero is a real cut (a relu that is off for every unit), not an underflow.
    """
    worst = None
    for m in measured:
        ok = (m >= TINY) & (m <= HUGE)
        if not ok.any():
            continue
        idx = np.flatnonzero(ok)
        a, b = idx[0], idx[-1]
        underflow = a > 0 and 0.0 < m[a - 1] < TINY
        if not (underflow or (m > HUGE).any()):
            continue
        if a == b:  # a single good step: jump by what separates it from the range's edge
            slope = math.log2(m[a]) - math.log2(TINY if underflow else HUGE)
        else:
            slope = (math.log2(m[b]) - math.log2(m[a])) / (b - a)  # bits gained per step
        if worst is None or abs(slope) > abs(worst):
            worst = slope
    return worst
