"""The cell contract check: every broken part of a user cell is named in one line (and no
zoo cell is rejected, see test_user_cells.py); ``rnnzoo.cells`` entry-point plugins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from cell_groups import ROW_CELLS, generic_cells

import rnnzoo
from rnnzoo import registry
from rnnzoo.cells.contract import CellContractError
from rnnzoo.errors import UserError
from rnnzoo.registry import create_cell, is_cell, list_cells

REPO = Path(__file__).resolve().parents[1]

BROKEN = '''
import torch
from torch import nn

from rnnzoo import FusedParams, RecurrentCell
from rnnzoo.cells.linear_recurrence import Recurrence


class Ok(RecurrentCell):
    """A valid Elman-style cell the broken ones start from."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(0.1 * torch.ones(hidden_size, input_size))
        self.weight_hh = nn.Parameter(0.1 * torch.ones(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def input_projection(self, x):
        return x @ self.weight_ih.T + self.bias

    def step(self, xp_t, state, rec_mask=None):
        h = state[0] if rec_mask is None else state[0] * rec_mask
        h = torch.tanh(xp_t + h @ self.weight_hh.T)
        return h, (h,)


def not_a_class(input_size, hidden_size):
    return Ok(input_size, hidden_size)


class NotACell(nn.Module):
    pass


class NoStep(RecurrentCell):
    def input_projection(self, x):
        return x


class OneArg(Ok):
    def __init__(self, hidden_size):
        super().__init__(1, hidden_size)


class ThreeTuple(Ok):
    def step(self, xp_t, state, rec_mask=None):
        y, state = super().step(xp_t, state, rec_mask)
        return y, state, None


class FlatProjection(Ok):
    def input_projection(self, x):
        return super().input_projection(x).flatten(0, 1)


class SizesDisagree(Ok):
    state_names = ("h", "c")

    @property
    def state_sizes(self):
        return (self.hidden_size,)


class BadStateShape(Ok):
    state_shape = (2, 3)  # 6 values, not hidden_size = 5


class ExtraState(Ok):
    def step(self, xp_t, state, rec_mask=None):
        y, (h,) = super().step(xp_t, state, rec_mask)
        return y, (h, h)


class ListState(Ok):
    def step(self, xp_t, state, rec_mask=None):
        y, (h,) = super().step(xp_t, state, rec_mask)
        return y, [h]


class OutputNotH(Ok):
    def step(self, xp_t, state, rec_mask=None):
        y, state = super().step(xp_t, state, rec_mask)
        return 2 * y, state


class Raises(Ok):
    def step(self, xp_t, state, rec_mask=None):
        return state[0] @ self.weight_hh[:2], state  # (2, 5) @ (2, 5)


class NoMask(Ok):
    def step(self, xp_t, state):
        return super().step(xp_t, state)


class NoParameters(RecurrentCell):
    def input_projection(self, x):
        return x

    def step(self, xp_t, state, rec_mask=None):
        return state[0], state


class KernelNoParams(Ok):
    fused_kernel = "elman_tanh"


class KernelMismatch(Ok):
    fused_kernel = "elman_tanh"

    def fused_params(self):
        return FusedParams("lstm", self.weight_ih, self.bias, self.weight_hh, None)


class KernelTransposed(KernelMismatch):
    def fused_params(self):
        return FusedParams("elman_tanh", self.weight_ih.T, self.bias, self.weight_hh, None)


class KernelDetached(KernelMismatch):
    def fused_params(self):
        w = self.weight_hh.detach()
        return FusedParams("elman_tanh", self.weight_ih, self.bias, w, None)


class KernelUnknown(KernelMismatch):
    fused_kernel = "no_such_family"


class KernelConstantExtra(KernelMismatch):  # valid: extra may be a constant
    def fused_params(self):
        extra = torch.tensor([0.5])
        return FusedParams("elman_tanh", self.weight_ih, self.bias, self.weight_hh, extra)


class KernelConstantBias(KernelMismatch):  # valid: no input bias (expRNN, LMU)
    def fused_params(self):
        zeros = torch.zeros(self.weight_ih.shape[0])
        return FusedParams("elman_tanh", self.weight_ih, zeros, self.weight_hh, None)


class ParamsNoKernel(Ok):
    def fused_params(self):
        return FusedParams("elman_tanh", self.weight_ih, self.bias, self.weight_hh, None)


class ScanOk(RecurrentCell):
    """h_t = a * (m * h_{t-1}) + W x_t, with the scan protocol (valid)."""

    factor = 1.0

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(0.1 * torch.ones(hidden_size, input_size))
        self.a = nn.Parameter(0.5 * torch.ones(hidden_size))

    def input_projection(self, x):
        return x @ self.weight_ih.T

    def step(self, xp_t, state, rec_mask=None):
        h = state[0] if rec_mask is None else state[0] * rec_mask
        h = self.a * h + xp_t
        return h, (h,)

    def recurrence(self, xp):
        return Recurrence(self.factor * self.a.expand_as(xp), xp, False)

    def to_scan(self, h):
        return h

    def from_scan(self, h):
        return h

    def output_map(self, x, hs):
        return hs


class ScanDiffers(ScanOk):
    factor = 0.9  # recurrence() disagrees with step()


class ScanPartial(Ok):
    def recurrence(self, xp):
        return None


class NativeIgnores(Ok):
    native_mode = "RNN_TANH"  # torch.nn.RNN without biases: self.bias would never train


class NativeUnknown(Ok):
    native_mode = "RNN"  # torch._VF has rnn_tanh and rnn_relu, no "RNN"


class NativeDiffers(RecurrentCell):
    native_mode = "RNN_RELU"  # but the step is tanh

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        for name, shape in (("weight_ih", (hidden_size, input_size)),
                            ("weight_hh", (hidden_size, hidden_size)),
                            ("bias_ih", (hidden_size,)), ("bias_hh", (hidden_size,))):
            self.register_parameter(name, nn.Parameter(0.1 * torch.ones(shape)))

    def input_projection(self, x):
        return x @ self.weight_ih.T + self.bias_ih + self.bias_hh

    def step(self, xp_t, state, rec_mask=None):
        h = torch.tanh(xp_t - 1 + state[0] @ self.weight_hh.T)
        return h, (h,)
'''

CASES = {
    "not_a_class": "it is a function, not a class",
    "NotACell": "NotACell is not a subclass of rnnzoo.RecurrentCell",
    "NoStep": "NoStep does not override step()",
    "OneArg": "OneArg() must take (input_size, hidden_size, **kwargs)",
    "ThreeTuple": "step() returned a 3-tuple; it must return (y_t, state)",
    "FlatProjection": "input_projection() returned (4, 5) for x of shape (2, 2, 3); it must",
    "SizesDisagree": "state_sizes (5,) must give one size per state in ('h', 'c')",
    "BadStateShape": "state_shape (2, 3) must be None or a tuple whose product is (5,)",
    "ExtraState": "step() returned a state tuple of [(2, 5), (2, 5)]; expected a tuple of",
    "ListState": "step() returned a state list of [(2, 5)]; expected a tuple",
    "OutputNotH": "output_is_h is True but step()'s y_t is not the new state[0]",
    "Raises": "step() raised RuntimeError: mat1 and mat2 shapes cannot be multiplied",
    "NoMask": "step() raised TypeError:",
    "NoParameters": "the cell has no parameters",
    "KernelNoParams": "fused_kernel is 'elman_tanh' but fused_params() returned None",
    "KernelMismatch": "fused_params().kernel 'lstm' != fused_kernel 'elman_tanh'",
    "KernelTransposed": "fused_params().w_ih is (3, 5); expected (G, input_size)",
    "KernelDetached": "fused_params().w_hh is a trainable parameter detached from the graph",
    "KernelUnknown": "fused_kernel 'no_such_family' is not a kernel family; known: ",
    "ScanDiffers": "the scan engine (its recurrence()) gives other outputs than step()",
    "ScanPartial": "it has part of the scan protocol but not to_scan(), from_scan(), output_map()",
    "ParamsNoKernel": "fused_params() returns parameters but fused_kernel is None",
    "NativeIgnores": "native_mode 'RNN_TANH': the native engine would ignore ['bias']",
    "NativeUnknown": "native_mode 'RNN' needs one of LSTM, GRU, RNN_TANH, RNN_RELU and",
    "NativeDiffers": "native_mode 'RNN_RELU': torch's kernel gives other outputs than step()",
}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """brokencells.py (and friends) on sys.path; module and lookup caches reset."""
    names = ("brokencells", "badimport", "needsdep", "plugcells", "plugmodule")
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(registry, "_USER_CELLS", {})
    (tmp_path / "brokencells.py").write_text(BROKEN)
    (tmp_path / "badimport.py").write_text("x = 1 / 0\n")
    (tmp_path / "needsdep.py").write_text("import nonexistent_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in names:
        sys.modules.pop(name, None)


def test_the_base_case_is_valid(user_dir):
    create_cell("brokencells:Ok", 3, 5)  # so every failure below is the one change's doing
    create_cell("brokencells:KernelConstantExtra", 3, 5)  # extra need not require grad
    create_cell("brokencells:ScanOk", 3, 5)  # the scan protocol, consistent with step()
    create_cell("brokencells:KernelConstantBias", 3, 5)  # nor a constant (zero) bias


def test_fused_families_are_read_from_the_headers():
    from rnnzoo.cells.contract import fused_families

    zoo = {rnnzoo.create_cell(n, 1, 4).fused_kernel for n in generic_cells()} - {None}
    zoo |= {rnnzoo.create_cell(n, 28, 56).fused_kernel for n in ROW_CELLS}  # rows of 28
    assert zoo <= set(fused_families()) and "elman_tanh" in fused_families()
    assert "lmu" in fused_families()  # a driver of its own (csrc/ops.cpp kOwnDrivers)


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_cells_are_named_in_one_line(user_dir, name):
    spec = f"brokencells:{name}"
    with pytest.raises(CellContractError) as err:
        create_cell(spec, 3, 5)
    message = str(err.value)
    assert message.startswith(f"cell {spec!r} breaks the cell contract: "), message
    assert CASES[name] in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nomodule_xyz:Cell", "no module named 'nomodule_xyz' on sys.path"),
        ("brokencells:Missing", "brokencells.py has no attribute 'Missing'; its cell classes: "),
        ("badimport:Cell", "importing 'badimport' failed: ZeroDivisionError: division by zero"),
        ("needsdep:Cell", "importing 'needsdep' failed: No module named 'nonexistent_dep_xyz'"),
        ("brokencells:", "expected module:Class"),
    ],
)
def test_missing_modules_and_attributes_are_one_line_user_errors(user_dir, spec, expected):
    with pytest.raises(UserError) as err:
        create_cell(spec, 3, 5)
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not is_cell(spec)


def test_train_py_rejects_a_broken_cell_in_one_line(user_dir, tiny_mnist_root):
    cmd = [sys.executable, str(REPO / "train.py"), "model=custom", "data.view=row"]
    cmd += ["model.cell=brokencells:ThreeTuple", "data.download=false"]
    cmd += [f"data.root={tiny_mnist_root}", "data.val_size=50", "trainer.progress=false"]
    env = {**os.environ, "PYTHONPATH": f"{user_dir}:{REPO}", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=user_dir, capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: cell 'brokencells:ThreeTuple' breaks the cell contract: step() returned a "
        "3-tuple; it must return (y_t, state)"
    )


# --- entry points -----------------------------------------------------------------------------

ENTRY_POINTS = """
[rnnzoo.cells]
plugok = plugcells:PlugCell
plugmod = plugmodule
plugmissing = plugcells:Missing
plugnotacell = plugcells:NotACell
"""


@pytest.fixture
def fake_distribution(user_dir, monkeypatch):
    """An installed distribution 'fakeplug' (a dist-info on sys.path) declaring cells in the
    rnnzoo.cells group: a class, a module that registers its own, and two broken ones."""
    dist = user_dir / "fakeplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    (user_dir / "plugcells.py").write_text(
        "from torch import nn\nfrom brokencells import Ok\n\n"
        "class PlugCell(Ok):\n    pass\n\nclass NotACell(nn.Module):\n    pass\n"
    )
    (user_dir / "plugmodule.py").write_text(
        textwrap.dedent(
            """
            from brokencells import Ok
            from rnnzoo import register_cell

            @register_cell("plugreg")
            class Registered(Ok):
                pass
            """
        )
    )
    monkeypatch.setattr(registry, "_CELLS", dict(registry._CELLS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    return user_dir


def test_entry_point_cells_load_lazily_and_broken_plugins_warn_once(fake_distribution):
    assert "plugok" not in registry._CELLS  # nothing loaded before the first lookup
    with pytest.warns(RuntimeWarning) as caught:
        names = list_cells()
    assert {"plugok", "plugreg"} <= set(names)
    assert not {"plugmissing", "plugnotacell"} & set(names)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2 and all("\n" not in m for m in messages)
    assert messages[0].startswith("rnnzoo: cell plugin plugmissing = 'plugcells:Missing' from")
    assert "fakeplug" in messages[0] and "AttributeError" in messages[0]
    assert "plugnotacell" in messages[1] and "not a subclass of rnnzoo.RecurrentCell" in messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loaded once: no second round of warnings
        cell = create_cell("PlugOK", 3, 5)
        assert type(cell).__name__ == "PlugCell" and is_cell("plugreg")
