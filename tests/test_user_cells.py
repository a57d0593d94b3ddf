"""Bring your own cell: ``module:Class`` names, the contract check, entry-point plugins, and
the example in docs/cells.md (extracted from the doc and trained, so it can never rot)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from cell_groups import ROW_CELLS
from torch import Tensor

import rnnzoo
from rnnzoo import registry
from rnnzoo.cells.contract import check_cell
from rnnzoo.engines import fused, fused_build, loop, resolve_engine
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import cell_label, create_cell, is_cell, list_cells, resolve_name

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cells.md"
F64 = torch.float64
#: modules the tests write; dropped from sys.modules around every test
USER_MODULES = ("mycells", "fusedcells", "brokencells", "badimport", "needsdep")
PLUGIN_MODULES = ("plugcells", "plugmodule")


def doc_example(name: str) -> str:
    """The ```python block after ``<!-- example: <name> ...-->`` in docs/cells.md."""
    text = DOC.read_text()
    match = re.search(rf"<!-- example: {re.escape(name)}\b.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, f"docs/cells.md has no example block {name}"
    return match.group(1)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A fresh directory on sys.path holding the doc's examples, with no cached modules or
    cached ``module:Class`` lookups from other tests."""
    for name in (*USER_MODULES, *PLUGIN_MODULES):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(registry, "_USER_CELLS", {})
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "mycells.py").write_text(doc_example("mycells.py"))
    (folder / "fusedcells.py").write_text(doc_example("fusedcells.py"))
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in (*USER_MODULES, *PLUGIN_MODULES):
        sys.modules.pop(name, None)


# --- the doc's example ----------------------------------------------------------------------


def reference_leaky(x: Tensor, w_ih, w_hh, b, alpha: float, mask=None) -> tuple[Tensor, Tensor]:
    """h_t = (1 - a) h_{t-1} + a tanh(W_ih x_t + b + W_hh (h_{t-1} * mask)), h_0 = 0, written
    one unit at a time from the equation (float64)."""
    T, B, _ = x.shape
    H = w_hh.shape[0]
    h = [[x.new_zeros(()) for _ in range(H)] for _ in range(B)]
    ys = []
    for t in range(T):
        new = []
        for n in range(B):
            hm = [h[n][k] * (1.0 if mask is None else mask[n, k]) for k in range(H)]
            row = []
            for j in range(H):
                pre = b[j] + sum(w_ih[j, i] * x[t, n, i] for i in range(x.shape[2]))
                pre = pre + sum(w_hh[j, k] * hm[k] for k in range(H))
                row.append((1 - alpha) * h[n][j] + alpha * torch.tanh(pre))
            new.append(row)
        h = new
        ys.append(torch.stack([torch.stack(r) for r in h]))
    return torch.stack(ys), ys[-1]


def test_doc_example_matches_its_equation_float64(user_dir):
    torch.manual_seed(0)
    cell = create_cell("mycells:LeakyRNN", 3, 4, alpha=0.3).to(F64)
    with torch.no_grad():
        cell.bias.uniform_(-0.5, 0.5)  # zero-initialized: make the term count
    x = torch.randn(5, 2, 3, dtype=F64)
    mask = (torch.rand(2, 4) > 0.3).to(F64) / 0.7
    ys, (h_n,) = loop.run(cell, x, cell.zero_state(2), mask)
    weights = (ys * torch.linspace(-1, 1, ys.numel(), dtype=F64).view_as(ys)).sum()
    grads = torch.autograd.grad(weights, list(cell.parameters()))
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    ref_ys, ref_h = reference_leaky(x, *params, alpha=0.3, mask=mask)
    ref_weights = (ref_ys * torch.linspace(-1, 1, ys.numel(), dtype=F64).view_as(ys)).sum()
    ref_grads = torch.autograd.grad(ref_weights, params)
    torch.testing.assert_close(ys, ref_ys)
    torch.testing.assert_close(h_n, ref_h)
    for name, g, r in zip(("weight_ih", "weight_hh", "bias"), grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, msg=lambda m, n=name: f"{n}: {m}")


def test_doc_example_trains_through_train(user_dir, tiny_mnist_root, tmp_path):
    from train_helpers import tiny_cfg

    from rnnzoo.training import train

    cfg = tiny_cfg(
        tiny_mnist_root,
        "model=custom",
        "model.cell=mycells:LeakyRNN",
        "+model.cell_kwargs.alpha=0.5",
    )
    assert cfg.run_name == "LeakyRNN_rowmnist_h8x1_seed0"  # no ':' in run directories
    metrics = train(cfg, run_dir=tmp_path / "run")
    assert metrics["status"] == "completed", metrics.get("error")
    assert metrics["cell"] == "mycells:LeakyRNN" and metrics["engine"] == "loop"
    hidden, width, classes = 8, 28, 10
    cell_params = hidden * width + hidden * hidden + hidden
    assert metrics["params"] == cell_params + hidden * classes + classes
    losses = [h["train_loss"] for h in metrics["history"]]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)  # 2 epochs of 8 batches
    assert metrics["steps"] == 16 and metrics["test_acc"] is not None


def test_a_user_cell_resumes_exactly(user_dir, tiny_mnist_root, tmp_path):
    from train_helpers import compared, tiny_cfg

    from rnnzoo.training import train

    cell = ("model=custom", "model.cell=mycells:LeakyRNN", "+model.cell_kwargs.alpha=0.7")
    whole = train(tiny_cfg(tiny_mnist_root, *cell), run_dir=tmp_path / "whole")
    train(tiny_cfg(tiny_mnist_root, *cell, "trainer.epochs=1"), run_dir=tmp_path / "first")
    resumed = tiny_cfg(tiny_mnist_root, *cell, f"trainer.resume={tmp_path / 'first'}")
    assert compared(train(resumed, run_dir=tmp_path / "second")) == compared(whole)


def test_custom_model_config_without_a_cell_is_a_one_line_error(tiny_mnist_root, tmp_path):
    from omegaconf import OmegaConf
    from train_helpers import tiny_cfg

    from rnnzoo.training import train

    cfg = tiny_cfg(tiny_mnist_root, "model=custom")
    shared = OmegaConf.load(REPO / "conf" / "model_shared.yaml")
    assert set(cfg.model) == set(shared) and cfg.model.cell_kwargs == {}
    assert cfg.run_name == "nocell_rowmnist_h8x1_seed0"  # the run starts, then says why not
    with pytest.raises(UserError, match="^model config needs cell$"):
        train(cfg, run_dir=tmp_path / "run")


def test_fused_example_matches_loop(user_dir):
    torch.manual_seed(0)
    cell = create_cell("fusedcells:FusedLeakyRNN", 3, 6, alpha=0.3).to(F64)
    with torch.no_grad():
        cell.bias.uniform_(-0.5, 0.5)  # zero-initialized: make the term count
    assert resolve_engine("auto", cell, "cpu") == "fused"
    fused_build.load_ops()  # the fused engine must build here (as in test_fused)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, 3, dtype=F64, generator=g)
    mask = (torch.rand(4, 6, generator=g) > 0.3).to(F64) / 0.7
    results = []
    for engine in (loop, fused):
        ys, (h_n,) = engine.run(cell, x, cell.zero_state(4), mask)
        loss = (ys * ys.new_tensor(range(ys.numel())).view_as(ys).cos()).sum() + h_n.sum()
        results.append((ys, h_n, *torch.autograd.grad(loss, list(cell.parameters()))))
    for ref, got in zip(*results, strict=True):
        torch.testing.assert_close(got, ref)


# --- names ------------------------------------------------------------------------------------


def test_module_class_names_resolve_and_label(user_dir):
    assert resolve_name("mycells:LeakyRNN") == "mycells:LeakyRNN"
    assert is_cell("mycells:LeakyRNN") and not is_cell("mycells:Nope")
    assert not is_cell("nomodule_xyz:Cell")
    assert cell_label("mycells:LeakyRNN") == "LeakyRNN" and cell_label("lstm") == "lstm"
    assert cell_label("pkg.cells:Outer.Inner") == "Inner"
    assert "mycells:LeakyRNN" not in list_cells()  # list_cells is the registry only
    model = SequenceClassifier("mycells:LeakyRNN", 1, 6, num_layers=2, bidirectional=True)
    assert all(type(c).__name__ == "LeakyRNN" for c in model.cells)
    assert model.model_args()["cell"] == "mycells:LeakyRNN"  # checkpoints rebuild the class


def test_rnnzoo_exports_the_contract():
    from rnnzoo.cells import base

    assert rnnzoo.RecurrentCell is base.RecurrentCell
    assert rnnzoo.State is base.State and rnnzoo.FusedParams is base.FusedParams
    assert rnnzoo.register_cell is registry.register_cell
    assert {"RecurrentCell", "State", "FusedParams", "register_cell"} <= set(rnnzoo.__all__)


@pytest.mark.parametrize("name", rnnzoo.list_cells())
def test_every_zoo_cell_passes_the_contract_check(name):
    sizes = (28, 56) if name in ROW_CELLS else (3, 5)  # the row cells read rows of 28
    check_cell(create_cell(name, *sizes), name)
    check_cell(create_cell(name, *sizes).double(), name)


def test_probing_draws_no_random_numbers(user_dir):
    (user_dir / "dropcells.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            from mycells import LeakyRNN

            class DropLeaky(LeakyRNN):
                def __init__(self, input_size, hidden_size):
                    super().__init__(input_size, hidden_size)
                    self.drop = nn.Dropout(0.5)

                def input_projection(self, x):
                    return self.drop(super().input_projection(x))
            """
        )
    )
    from mycells import LeakyRNN

    torch.manual_seed(3)
    LeakyRNN(2, 5)
    expected = torch.get_rng_state()
    torch.manual_seed(3)
    cell = create_cell("dropcells:DropLeaky", 2, 5)  # probed: must not touch the stream
    assert torch.equal(torch.get_rng_state(), expected)
    assert cell.training  # and left in the mode it was built in
    sys.modules.pop("dropcells", None)


# --- sweeps, benchmark, results ----------------------------------------------------------------


def test_sweep_with_a_zoo_cell_and_the_results_table(user_dir, tiny_mnist_root, tmp_path):
    from rnnzoo.report import write_report

    cmd = [sys.executable, str(REPO / "train.py"), "-m", "model=custom"]
    cmd += ["model.cell=mycells:LeakyRNN,lstm", "model.hidden_size=8", "model.engine=loop"]
    cmd += [f"data.root={tiny_mnist_root}", "data.download=false", "data.view=row"]
    cmd += ["data.val_size=50", "data.batch_size=16", "trainer.epochs=1", "device=cpu"]
    cmd += ["trainer.limit_train_batches=2", "trainer.limit_eval_batches=1"]
    cmd += ["trainer.progress=false"]
    env = {**os.environ, "PYTHONPATH": f"{user_dir}:{REPO}", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    jobs = sorted(d.name for d in sweep.iterdir() if d.is_dir())
    assert jobs == ["0_LeakyRNN_rowmnist_h8x1_seed0", "1_lstm_rowmnist_h8x1_seed0"]
    metrics = json.loads((sweep / jobs[0] / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["cell"] == "mycells:LeakyRNN"
    table = write_report([sweep], tmp_path / "results", plots=False).table
    assert "| LeakyRNN | rowmnist | 8 | 1 |" in table and "| lstm | rowmnist | 8 | 1 |" in table
    assert "mycells" not in table


def test_benchmark_takes_module_class_names(user_dir):
    from rnnzoo.bench import BenchConfig, format_table, run_benchmark

    (user_dir / "plaincells.py").write_text(
        textwrap.dedent(
            """
            from torch import nn
            from mycells import LeakyRNN

            class Renamed(LeakyRNN):  # its own parameter names: no GEMM floor to build
                def __init__(self, input_size, hidden_size):
                    super().__init__(input_size, hidden_size)
                    self.w_in = self.weight_ih
                    del self.weight_ih

                def input_projection(self, x):
                    return x @ self.w_in.T + self.bias
            """
        )
    )
    cfg = BenchConfig(
        batch_size=2, hidden_size=4, seq_len=3, engines=["loop"], repeats=1, naive_repeats=1,
        cells=["mycells:LeakyRNN", "plaincells:Renamed", "lstm"],
    )  # fmt: skip
    report = run_benchmark(cfg)
    assert list(report["cells"]) == ["mycells:LeakyRNN", "plaincells:Renamed", "lstm"]
    leaky = report["cells"]["mycells:LeakyRNN"]
    assert set(leaky["engines"]) == {"loop"} and leaky["gemm"]["ms_per_step"] > 0
    assert report["cells"]["plaincells:Renamed"].get("gemm") is None
    rows = [line.split()[0] for line in format_table(report).splitlines()[2:-1]]
    assert [r for r in rows if r[0].isupper() or r == "lstm"] == ["LeakyRNN", "Renamed", "lstm"]
    sys.modules.pop("plaincells", None)
