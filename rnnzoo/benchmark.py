"""Side-by-side timing of one sMNIST training step for every cell and engine.

One training step = forward over the whole sequence, cross-entropy on the last step's
readout, backward, Adam update (``zero_grad`` included). At Sequential MNIST shapes by default:
batch 128, hidden 128, 1 layer, 784 steps, 1 input, 10 classes. For every cell, in the same
process and interleaved (each repeat times every contender once, so load changes on a busy
machine hit them all alike), with the median of ``repeats`` timings after ``warmup`` steps:

- every engine that supports the cell (``loop``, ``native``, ``fused``, ``scan``);
- ``builtin``: the torch.nn module where one exists (nn.RNN tanh for rnn, nn.RNN relu for
  irnn, nn.LSTM, nn.GRU) with a linear readout and Adam, the same data;
- ``gemm``: the floor, the matrix multiplies alone at the same shapes, read from the cell
  contract: ``cell.fused_params()`` gives W_ih (G, I) and W_hh (G, K) of the kernel family
  (LipschitzRNN's stacked [A; W], the LMU's one matrix on [h | m], a row cell's convolution
  as a dense matrix); a cell without a family is read by torch's names, ``weight_ih`` and
  ``weight_hh``, and has no floor without them. Per layer, the
  recurrent GEMMs step by step (forward h_{t-1} W_hh^T; backward dG_t W_hh and the weight
  gradient sum_t dG_t^T h_{t-1}), plus the input projection where it is a real GEMM, i.e.
  the layer's input is wider than 1 (layers > 1, and the +RNN whose model maps the input to
  H first): x W_ih^T, dG^T x and dG W_ih over all T * B rows at once. With one input pixel
  (I = 1) the input projection is an outer product, not a GEMM, and not part of the floor.
  Timed two ways, the faster counts: torch.mm per step from Python (weight gradient as one
  matmul), and the fused library's C++ loop of the same recurrent GEMMs (one thread per
  batch shard, per-step GEMMs, weight gradient over chunks of steps). IndRNN's recurrence
  is element-wise (so are minGRU's, minLSTM's and the LRU's): its only matrix multiplies
  are the input projection's, so its floor is those memory-bound outer products, and its
  ratio is not comparable to the other cells'. A frozen reservoir (esn) trains only its
  readout: its floor is the forward GEMMs alone;
- ``naive64``: how the original rnn_zoo trained: float64, a Python loop over time with
  per-step linear layers (``cell.input_projection`` on one step, then ``cell.step``),
  step-major over the layers. Slow at T = 784, so it has its own repeat count.

Ratios per engine: ``ratio_vs_builtin`` = builtin ms / engine ms (> 1: faster than torch.nn),
``ratio_vs_gemm`` = engine ms / GEMM-only ms (>= 1; 1 would be all matmul), and
``ratio_vs_naive64`` = naive64 ms / engine ms. Targets (shown, not enforced): the best engine
at most 2.0x its GEMM floor, at least 1.5x faster than the built-in, at least 4x faster than
naive64.

Wall-clock times (``time.perf_counter``). Input: standard normal pixels, random labels,
fixed seeds. Denormal floats: gradients that vanish over 784 steps pass through the
denormal range, where every float op is ~100x slower. ``flush_denormal`` (default True, the
headline: like-for-like, what ``trainer.flush_denormal`` does in training) sets FTZ/DAZ on
every thread of torch's pool for all contenders. With it False, torch's kernels (loop,
native, builtin) compute on denormals, several times slower on this input, while the fused
kernels still flush in their own threads: what a plain torch user gets.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.engines import fused_build, list_engines, resolve_engine, valid_engines
from rnnzoo.engines.denormal import flush_denormals
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import cell_label, list_cells, resolve_name

ENGINES = ("loop", "native", "fused", "scan")
#: cells that are exactly a torch.nn module, and how to build it
BUILTINS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "irnn": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}
TARGETS = {"max_ratio_vs_gemm": 2.0, "min_ratio_vs_builtin": 1.5, "min_ratio_vs_naive64": 4.0}
#: cells that read image rows (convlstm, convrnn) run at the row view's shape, their model
#: config's width (16 channels x 28 pixels), without the float64 column (its per-step
#: linear layers are not how these cells were ever trained)
ROW_CELLS = ("convlstm", "convrnn")
ROW_SHAPE = {"seq_len": 28, "input_size": 28, "hidden_size": 16 * 28, "naive": False}
TRAIN_SIZE = 55000  # sMNIST training images after the 5000-image validation split


@dataclasses.dataclass
class BenchConfig:
    """What to time. Sizes default to Sequential MNIST (pixel by pixel)."""

    batch_size: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    seq_len: int = 784
    input_size: int = 1
    num_classes: int = 10
    cells: list[str] | None = None  # None: every registered cell
    engines: list[str] = dataclasses.field(default_factory=lambda: list(ENGINES))
    device: str = "cpu"
    repeats: int = 5
    warmup: int = 1
    naive: bool = True
    naive_repeats: int = 3
    builtin: bool = True
    gemm: bool = True
    threads: int | None = None
    flush_denormal: bool = True
    profile: bool = False
    seed: int = 0


# --- contenders: each is a closure running one training step -------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _data(cfg: BenchConfig, device: torch.device, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.seq_len, cfg.batch_size, cfg.input_size, generator=g, dtype=dtype)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=g)
    return x.to(device), y.to(device)


def _train_step(
    model: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor
) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(forward(x), y).backward()
        opt.step()

    return step


def engine_step(cfg: BenchConfig, cell: str, engine: str, device: torch.device) -> Callable:
    """One training step of ``SequenceClassifier(cell)`` with ``engine``."""
    torch.manual_seed(cfg.seed)
    model = SequenceClassifier(
        cell, cfg.input_size, cfg.hidden_size, cfg.num_classes, cfg.num_layers, engine=engine
    ).to(device)
    x, y = _data(cfg, device)
    return _train_step(model, lambda inp: model(inp)[0], x, y)


def builtin_step(cfg: BenchConfig, cell: str, device: torch.device) -> Callable:
    """One training step of the torch.nn module equivalent to ``cell`` (+ linear readout)."""
    cls, kwargs = BUILTINS[cell]
    torch.manual_seed(cfg.seed)
    rnn = cls(cfg.input_size, cfg.hidden_size, cfg.num_layers, **kwargs).to(device)
    readout = nn.Linear(cfg.hidden_size, cfg.num_classes).to(device)
    model = nn.ModuleDict({"rnn": rnn, "readout": readout})
    x, y = _data(cfg, device)
    return _train_step(model, lambda inp: readout(rnn(inp)[0][-1]), x, y)


def naive64_step(cfg: BenchConfig, cell: str, device: torch.device) -> Callable:
    """rnn_zoo's way: float64, a Python loop over time, per-step linear layers."""
    torch.manual_seed(cfg.seed)
    model = SequenceClassifier(
        cell, cfg.input_size, cfg.hidden_size, cfg.num_classes, cfg.num_layers, engine="loop"
    )
    model = copy.deepcopy(model).to(device=device, dtype=torch.float64)
    x, y = _data(cfg, device, torch.float64)
    cells, maps = list(model.cells), list(model.input_maps)

    def forward(inp: Tensor) -> Tensor:
        states = [c.zero_state(inp.shape[1]) for c in cells]
        out = inp
        for x_t in inp.unbind(0):  # never inp[t] (see the loop engine)
            out = x_t
            for k, c in enumerate(cells):
                xp = c.input_projection(maps[k](out).unsqueeze(0))[0]  # (B, P) per step
                out, states[k] = c.step(xp, states[k])
        return model.readout(out)

    return _train_step(model, forward, x, y)


@dataclasses.dataclass
class _GemmLayer:
    """The matrix multiplies of one layer: the recurrent one (W_hh (G, H)) and, when it is a
    real GEMM (input width > 1, or IndRNN which has no other), the input projection."""

    rec: tuple[int, int] | None  # (G, H)
    inp: tuple[int, int] | None  # (G, I)
    dx: bool  # backward also computes dG W_ih (the layer's input needs a gradient)
    backward: bool = True  # False: nothing in or below the layer trains (esn): forward only


def _matrix(weight: Tensor | None) -> bool:
    return weight is not None and weight.dim() == 2


def _gemm_layers(model: SequenceClassifier) -> list[_GemmLayer]:
    layers = []
    trains = False  # does this layer or one below it have a trainable parameter?
    for k, cell in enumerate(model.cells):
        trains = trains or any(p.requires_grad for p in cell.parameters())
        trains = trains or any(p.requires_grad for p in model.input_maps[k].parameters())
        # the GEMMs of the cell's kernel family (e.g. LipschitzRNN's stacked [A; W], the LMU's
        # one matrix on [h | m]); cells without a family: their own weight_hh / weight_ih
        params = cell.fused_params()
        if params is not None:
            w_hh, w_ih = params.w_hh, params.w_ih
        else:  # no kernel family (a user cell): torch's layout names, if it has them
            w_hh, w_ih = getattr(cell, "weight_hh", None), getattr(cell, "weight_ih", None)
        rec = tuple(w_hh.shape) if _matrix(w_hh) else None
        if not _matrix(w_ih):  # no (G, I) input weight to read: no floor defined here
            continue
        inp = tuple(w_ih.shape) if (w_ih.shape[1] > 1 or rec is None) else None
        mapped = not isinstance(model.input_maps[k], nn.Identity)
        dx = trains and (k >= model.num_directions or mapped)
        layers.append(_GemmLayer(rec, inp, dx=dx, backward=trains))
    return layers


def gemm_steps(cfg: BenchConfig, cell: str, device: torch.device) -> dict[str, Callable]:
    """The GEMM-only floor of ``cell``: {"torch": step, "sharded": step (CPU, if built)}.

    Per layer: the recurrent GEMMs step by step (forward h_{t-1} W_hh^T; backward dG_t W_hh
    and the weight gradient), plus the input projection over all T * B rows at once where it
    is a real GEMM (forward x W_ih^T; backward dG^T x, and dG W_ih when the layer's input
    needs a gradient). The "sharded" variant runs the recurrent part in the fused library's
    C++ loop (one thread per batch shard); the input part is torch.mm in both.
    """
    torch.manual_seed(cfg.seed)
    model = SequenceClassifier(cell, cfg.input_size, cfg.hidden_size, cfg.num_classes,
                               cfg.num_layers, engine="loop")  # fmt: skip
    T, B = cfg.seq_len, cfg.batch_size
    g = torch.Generator().manual_seed(cfg.seed)

    def rand(*shape: int, scale: float = 1.0) -> Tensor:
        return (scale * torch.randn(*shape, generator=g)).to(device)

    rec_ops, inp_ops = [], []
    for layer in _gemm_layers(model):
        if layer.rec is not None:  # h (T, B, H), W_hh (G, H), dG (T, B, G)
            G, H = layer.rec
            h, w = rand(T, B, H), rand(G, H, scale=0.1)
            rec_ops.append((h, w, rand(T, B, G) if layer.backward else None))
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
            s = torch.empty(B, G, device=device)
            dh = torch.empty(B, H, device=device)
            wt = w.t()
            for h_t in h.unbind(0):
                torch.mm(h_t, wt, out=s)
            if dg is None:
                continue
            for dg_t in dg.unbind(0):
                torch.mm(dg_t, w, out=dh)
            torch.mm(dg.view(-1, G).t(), h.view(-1, H))
        input_gemms()

    if not rec_ops and not inp_ops:
        return {}
    steps = {"torch": torch_step}
    ops = None
    if device.type == "cpu" and rec_ops:
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
            input_gemms()

        steps["sharded"] = sharded_step
    return steps


# --- timing ----------------------------------------------------------------------------------


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _row(ms: float, cfg: BenchConfig) -> dict[str, Any]:
    return {
        "ms_per_step": round(ms, 3),
        "seq_per_s": round(cfg.batch_size / (ms / 1000.0), 2),
        "epoch_s": round(math.ceil(TRAIN_SIZE / cfg.batch_size) * ms / 1000.0, 1),
    }


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return round(num / den, 3)


def bench_cell(cfg: BenchConfig, cell: str, device: torch.device) -> dict[str, Any]:
    """Time every contender for ``cell`` (interleaved) and compute the ratios."""
    probe = SequenceClassifier(cell, cfg.input_size, cfg.hidden_size, engine="loop").cells[0]
    usable = valid_engines(probe, device)
    contenders: dict[str, Callable] = {}
    for engine in cfg.engines:
        if engine in usable:
            contenders[engine] = engine_step(cfg, cell, engine, device)
    if cfg.builtin and cell in BUILTINS:
        contenders["builtin"] = builtin_step(cfg, cell, device)
    gemm_variants: dict[str, Callable] = gemm_steps(cfg, cell, device) if cfg.gemm else {}
    for name, fn in gemm_variants.items():
        contenders[f"gemm_{name}"] = fn

    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        for _ in range(cfg.warmup):
            fn()
    ops = _profiler(cfg, "fused" in contenders)
    profile: list[float] | None = None
    for _ in range(cfg.repeats):
        for name, fn in contenders.items():
            if ops is not None and name == "fused":
                ops.profile(True)
            times[name].append(_timed(fn, device))
            if ops is not None and name == "fused":
                sample = ops.profile(False)
                profile = (
                    sample
                    if profile is None
                    else [a + b for a, b in zip(profile, sample, strict=True)]
                )

    naive_ms = None
    if cfg.naive:
        naive = naive64_step(cfg, cell, device)
        for _ in range(min(cfg.warmup, 1)):
            naive()
        naive_ms = 1000 * statistics.median(
            _timed(naive, device) for _ in range(max(1, cfg.naive_repeats))
        )

    ms = {name: 1000 * statistics.median(v) for name, v in times.items()}
    builtin_ms = ms.get("builtin")
    gemm_ms = min((ms[f"gemm_{n}"] for n in gemm_variants), default=None)
    result: dict[str, Any] = {"engines": {}, "auto": resolve_engine("auto", probe, device)}
    for engine in cfg.engines:
        if engine not in ms:
            continue
        row = _row(ms[engine], cfg)
        row["ratio_vs_builtin"] = _ratio(builtin_ms, ms[engine])
        row["ratio_vs_gemm"] = _ratio(ms[engine], gemm_ms)
        row["ratio_vs_naive64"] = _ratio(naive_ms, ms[engine])
        result["engines"][engine] = row
    if builtin_ms is not None:
        result["builtin"] = _row(builtin_ms, cfg)
    if gemm_ms is not None:
        result["gemm"] = _row(gemm_ms, cfg)
        result["gemm"]["variants_ms"] = {n: round(ms[f"gemm_{n}"], 3) for n in gemm_variants}
    if naive_ms is not None:
        result["naive64"] = _row(naive_ms, cfg)
    if result["engines"]:
        best = min(result["engines"], key=lambda e: result["engines"][e]["ms_per_step"])
        result["best"] = best
        result["targets"] = _targets(result["engines"][best])
    if profile is not None:
        result["fused_profile_ms"] = _profile_summary(profile, cfg.repeats)
    return result


def _targets(row: dict[str, Any]) -> dict[str, bool | None]:
    def check(value, bound, larger):
        if value is None:
            return None
        return value >= bound if larger else value <= bound

    return {
        "ratio_vs_gemm": check(row["ratio_vs_gemm"], TARGETS["max_ratio_vs_gemm"], False),
        "ratio_vs_builtin": check(row["ratio_vs_builtin"], TARGETS["min_ratio_vs_builtin"], True),
        "ratio_vs_naive64": check(row["ratio_vs_naive64"], TARGETS["min_ratio_vs_naive64"], True),
    }


#: the fused kernels' phases (rnnzoo/engines/csrc/runtime.h, enum Phase)
PHASES = ("fwd_input", "fwd_gemm", "fwd_elementwise", "bwd_elementwise", "bwd_gemm",
          "bwd_copy", "bwd_weight_grad")  # fmt: skip


def _profiler(cfg: BenchConfig, wanted: bool):
    if not (cfg.profile and wanted):
        return None
    try:
        return fused_build.load_ops()
    except fused_build.FusedBuildError:
        return None


def _profile_summary(total: list[float], repeats: int) -> dict[str, float]:
    """Thread CPU ms per training step in each phase of the fused kernels (summed over
    layers and over the threads that run the shards)."""
    return {name: round(1000 * total[i] / repeats, 2) for i, name in enumerate(PHASES)}


def _flush_denormal(enable: bool) -> bool:
    """FTZ/DAZ on the calling thread and every thread of torch's pool (see
    ``rnnzoo.engines.denormal``)."""
    return flush_denormals(enable)


# --- the whole run -----------------------------------------------------------------------------


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where the numbers come from (load average: the machine may be shared)."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": fused_build.cpu_capability(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every cell in ``cfg.cells``; returns a JSON-ready report."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    flushed = cfg.flush_denormal and _flush_denormal(True)
    device = torch.device(cfg.device)
    try:
        cells = [resolve_name(c) for c in (cfg.cells or list_cells())]
    except ValueError as err:
        raise UserError(str(err)) from None
    unknown = [e for e in cfg.engines if e not in list_engines() or e == "auto"]
    if unknown:
        valid = ", ".join(e for e in list_engines() if e != "auto")
        raise UserError(f"unknown engines {unknown}; valid: {valid}")
    report: dict[str, Any] = {
        "config": dataclasses.asdict(cfg) | {"cells": cells},
        "machine": machine_info(device),
        "targets": TARGETS,
        "cells": {},
    }
    try:
        for cell in cells:
            if log:
                log(f"timing {cell} ...")
            cell_cfg = dataclasses.replace(cfg, **ROW_SHAPE) if cell in ROW_CELLS else cfg
            report["cells"][cell] = bench_cell(cell_cfg, cell, device)
            if cell in ROW_CELLS:
                shape = {k: v for k, v in ROW_SHAPE.items() if k != "naive"}
                report["cells"][cell]["shape"] = shape
    finally:
        if flushed:
            _flush_denormal(False)
    report["machine"]["load_average_end"] = machine_info(device)["load_average"]
    if fused_build.build_failed():
        report["machine"]["fused"] = "NOT BUILT: the fused rows are the loop engine"
    return report


# --- the table ---------------------------------------------------------------------------------


def _fmt(value: float | None, suffix: str = "x", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table, one block of rows per cell."""
    cfg, machine = report["config"], report["machine"]
    lines = [
        f"one training step (forward + backward + Adam): B={cfg['batch_size']} "
        f"H={cfg['hidden_size']} layers={cfg['num_layers']} T={cfg['seq_len']} "
        f"I={cfg['input_size']}, device={cfg['device']}, {machine['threads']} threads "
        f"({machine['cpu_capability']}), load {machine['load_average']} -> "
        f"{machine.get('load_average_end')}, flush_denormal={cfg['flush_denormal']}"
        + (f"\n{machine['fused']}" if "fused" in machine else ""),
        f"{'cell':<13}{'engine':<9}{'ms/step':>10}{'seq/s':>9}{'epoch':>8}"
        f"{'vs builtin':>12}{'vs gemm':>9}{'vs naive64':>12}  notes",
    ]
    for spec, res in report["cells"].items():
        cell, first = cell_label(spec), True  # mycells:LeakyRNN -> LeakyRNN
        for engine, row in res["engines"].items():
            notes = []
            if engine == res.get("best"):
                missed = [k for k, ok in res["targets"].items() if ok is False]
                notes.append("best" + (f" (misses {', '.join(missed)})" if missed else ""))
            if engine == res.get("auto"):
                notes.append("auto")
            lines.append(
                f"{cell if first else '':<13}{engine:<9}{row['ms_per_step']:>10.1f}"
                f"{row['seq_per_s']:>9.0f}{_minutes(row['epoch_s']):>8}"
                f"{_fmt(row['ratio_vs_builtin']):>12}{_fmt(row['ratio_vs_gemm']):>9}"
                f"{_fmt(row['ratio_vs_naive64'], digits=1):>12}  {', '.join(notes)}"
            )
            first = False
        for name in ("builtin", "gemm", "naive64"):
            row = res.get(name)
            if row is None:
                continue
            note = ""
            if name == "gemm":
                note = ", ".join(f"{k} {v:.1f}" for k, v in row["variants_ms"].items())
            lines.append(
                f"{cell if first else '':<13}{name:<9}{row['ms_per_step']:>10.1f}"
                f"{row['seq_per_s']:>9.0f}{_minutes(row['epoch_s']):>8}"
                f"{'':>12}{'':>9}{'':>12}  {note}"
            )
            first = False
        if "shape" in res:
            shape = " ".join(f"{k}={v}" for k, v in res["shape"].items())
            lines.append(f"{'':<13}at the row view's shape: {shape}")
        if "fused_profile_ms" in res:
            parts = ", ".join(f"{k} {v:.0f}" for k, v in res["fused_profile_ms"].items())
            lines.append(f"{'':<13}fused profile, thread-CPU ms per step: {parts}")
    lines.append(
        "epoch = ceil(55000 / B) steps; vs builtin = builtin ms / ms (>1 faster); "
        "vs gemm = ms / GEMM-only ms; vs naive64 = float64 per-step loop ms / ms"
    )
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}m"
