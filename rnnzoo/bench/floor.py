"""The GEMM-only floor: the matrix multiplies of one training step alone, at its shapes.

Read from the cell contract: ``cell.fused_params()`` gives W_ih (G, I) and W_hh (G, K) of the
cell's kernel family (LipschitzRNN's stacked [A; W], the LMU's [W_h | W_m] on [h | m_t]), and
``cell.fused_constant_recurrence()`` a constant matrix the kernel also applies per step (the
LMU's Abar: forward and backward products, no weight gradient); a row cell's (``conv_width``
= W) are its kernels, and its GEMMs are those of a convolution by im2col (one per step for
both maps: (Go, (C_in + C)*k) x ((C_in + C)*k, B*W), i.e. the recurrent GEMMs below with B*W
rows and no separate input GEMM; the fused drivers convolve directly, without a GEMM, and run
below this floor); a cell without a family is read by torch's names,
``weight_ih`` and ``weight_hh``, and has no floor without them. Per layer, the recurrent
GEMMs step by step (forward h_{t-1} W_hh^T; backward dG_t W_hh and the weight gradient
sum_t dG_t^T h_{t-1}), plus the input projection where it is a real GEMM, i.e. the layer's
input is wider than 1 (layers > 1, and the +RNN whose model maps the input to H first):
x W_ih^T, dG^T x and dG W_ih over all T * B rows at once. With one input pixel (I = 1) the
input projection is an outer product, not a GEMM, and not part of the floor.

Timed two ways, the faster counts: torch.mm per step from Python (weight gradient as one
matmul), and the fused library's C++ loop of the same recurrent GEMMs (one thread per batch
shard, per-step GEMMs, weight gradient over chunks of steps). IndRNN's recurrence is
element-wise (so are minGRU's, minLSTM's and the LRU's): its only matrix multiplies are the
input projection's, so its floor is those memory-bound outer products, and its ratio is not
comparable to the other cells'. A frozen reservoir (esn) trains only its readout: its floor
is the forward GEMMs alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnzoo.bench.config import BenchConfig
from rnnzoo.engines import fused_build
from rnnzoo.model import SequenceClassifier


@dataclasses.dataclass
class GemmLayer:
    """The matrix multiplies of one layer: the recurrent one (W_hh (G, H)) and, when it is a
    real GEMM (input width > 1, or IndRNN which has no other), the input projection."""

    rec: tuple[int, int] | None  # (G, H)
    inp: tuple[int, int] | None  # (G, I)
    dx: bool  # backward also computes dG W_ih (the layer's input needs a gradient)
    backward: bool = True  # False: nothing in or below the layer trains (esn): forward only
    const: tuple[int, int] | None = None  # (K, K): a constant recurrent matrix (LMU's Abar)
    width: int = 1  # rows per batch row: a row cell's convolution GEMMs run on B * W columns


def _matrix(weight: Tensor | None) -> bool:
    return weight is not None and weight.dim() == 2


def gemm_layers(model: SequenceClassifier) -> list[GemmLayer]:
    layers = []
    trains = False  # does this layer or one below it have a trainable parameter?
    for k, cell in enumerate(model.cells):
        trains = trains or any(p.requires_grad for p in cell.parameters())
        trains = trains or any(p.requires_grad for p in model.input_maps[k].parameters())
        # the GEMMs of the cell's kernel family (e.g. LipschitzRNN's stacked [A; W], the LMU's
        # [W_h | W_m] on [h | m_t]); cells without a family: their own weight_hh / weight_ih
        params = cell.fused_params()
        mapped = not isinstance(model.input_maps[k], nn.Identity)
        dx = trains and (k >= model.num_directions or mapped)
        if params is not None and params.conv_width:  # one convolution GEMM for both maps
            rec = (params.w_hh.shape[0], params.w_ih.shape[1] + params.w_hh.shape[1])
            layers.append(GemmLayer(rec, None, dx=dx, backward=trains, width=params.conv_width))
            continue
        if params is not None:
            w_hh, w_ih = params.w_hh, params.w_ih
        else:  # no kernel family (a user cell): torch's layout names, if it has them
            w_hh, w_ih = getattr(cell, "weight_hh", None), getattr(cell, "weight_ih", None)
        rec = tuple(w_hh.shape) if _matrix(w_hh) else None
        if not _matrix(w_ih):  # no (G, I) input weight to read: no floor defined here
            continue
        inp = tuple(w_ih.shape) if (w_ih.shape[1] > 1 or rec is None) else None
        const = getattr(cell, "fused_constant_recurrence", None)
        const = tuple(const().shape) if callable(const) else None
        layers.append(GemmLayer(rec, inp, dx=dx, backward=trains, const=const))
    return layers


def gemm_steps(cfg: BenchConfig, cell: str, device: torch.device) -> dict[str, Callable]:
    """The GEMM-only floor of ``cell``: {"torch": step, "sharded": step (CPU, if built)}.

    Per layer: the recurrent GEMMs step by step (forward h_{t-1} W_hh^T; backward dG_t W_hh
    and the weight gradient), plus the input projection over all T * B rows at once where it
    is a real GEMM (forward x W_ih^T; backward dG^T x, and dG W_ih when the layer's input
    needs a gradient). The "sharded" variant runs the recurrent part in the fused library's
    C++ loop (one thread per batch shard); the input part is torch.mm in both. Row cells'
    convolution GEMMs (B*W columns per step) are timed by torch.mm only: the C++ loop would
    shard their B*W columns like batch rows, in smaller pieces than the drivers do.
    """
    torch.manual_seed(cfg.seed)
    model = SequenceClassifier(cell, cfg.input_size, cfg.hidden_size, cfg.num_classes,
                               cfg.num_layers, engine="loop")  # fmt: skip
    T, B = cfg.seq_len, cfg.batch_size
    g = torch.Generator().manual_seed(cfg.seed)

    def rand(*shape: int, scale: float = 1.0) -> Tensor:
        return (scale * torch.randn(*shape, generator=g)).to(device)

    rec_ops, inp_ops, const_ops = [], [], []
    layers = gemm_layers(model)
    for layer in layers:
        if layer.const is not None:  # m (T, B, K), A (K, K): m A^T, and backward dm A
            K = layer.const[0]
            const_ops.append((rand(T, B, K), rand(K, K, scale=0.1), layer.backward))
        if layer.rec is not None:  # h (T, B*width, H), W_hh (G, H), dG (T, B*width, G)
            G, H = layer.rec
            rows = B * layer.width
            h, w = rand(T, rows, H), rand(G, H, scale=0.1)
            rec_ops.append((h, w, rand(T, rows, G) if layer.backward else None))
        if layer.inp is not None:  # x (T*B, I), W_ih (G, I), dG (T*B, G)
            G, n_in = layer.inp
            x, w, dg = rand(T * B, n_in), rand(G, n_in, scale=0.1), rand(T * B, G)
            inp_ops.append((x, w, dg if layer.backward else None, layer.dx))

    def input_gemms() -> None:
        for x, w, dg, dx in inp_ops:
            torch.mm(x, w.t())
            if dg is None:
                continue
            torch.mm(dg.t(), x)
            if dx:
                torch.mm(dg, w)

    def torch_step() -> None:
        for h, w, dg in rec_ops:
            G, H = w.shape
            s = torch.empty(h.shape[1], G, device=device)
            dh = torch.empty(h.shape[1], H, device=device)
            wt = w.t()
            for h_t in h.unbind(0):
                torch.mm(h_t, wt, out=s)
            if dg is None:
                continue
            for dg_t in dg.unbind(0):
                torch.mm(dg_t, w, out=dh)
            torch.mm(dg.view(-1, G).t(), h.view(-1, H))
        for m, a, backward in const_ops:
            out = torch.empty_like(m[0])
            for op in (a.t(), a) if backward else (a.t(),):
                for m_t in m.unbind(0):
                    torch.mm(m_t, op, out=out)
        input_gemms()

    if not rec_ops and not inp_ops and not const_ops:
        return {}
    steps = {"torch": torch_step}
    ops = None
    if device.type == "cpu" and rec_ops and all(layer.width == 1 for layer in layers):
        try:
            ops = fused_build.load_ops()
        except fused_build.FusedBuildError:
            ops = None
    if ops is not None:

        def sharded_step() -> None:
            for h, w, dg in rec_ops:
                ops.gemm_only(h, w, h if dg is None else dg, False)
                if dg is not None:
                    ops.gemm_only(h, w, dg, True)
            for m, a, backward in const_ops:  # square: backward's dm A costs as m A^T
                for _ in range(2 if backward else 1):
                    ops.gemm_only(m, a, m, False)
            input_gemms()

        steps["sharded"] = sharded_step
    return steps
