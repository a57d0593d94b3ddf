"""The contenders: each is a closure running one training step on the same data.

- an engine (``engine_step``): ``SequenceClassifier(cell, engine=...)``;
- ``builtin``: the torch.nn module where one exists (nn.RNN tanh for rnn, nn.RNN relu for
  irnn, nn.LSTM, nn.GRU) with a linear readout and Adam, the same data;
- ``naive64``: how the original rnn_zoo trained: float64, a Python loop over time with
  per-step linear layers (``cell.input_projection`` on one step, then ``cell.step``),
  step-major over the layers. Slow at T = 784, so it has its own repeat count.

The GEMM-only floor is in ``floor.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnzoo.bench.config import BenchConfig
from rnnzoo.model import SequenceClassifier

#: cells that are exactly a torch.nn module, and how to build it
BUILTINS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "irnn": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}


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
