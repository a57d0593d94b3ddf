"""The ``convrnn`` cell against a float64 reference written from its module docstring's
equations (outputs and every gradient), the banded-matrix form the fused engine runs
(== loop), its size rules and one-line errors, and the full model on rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cell_checks import F64, assert_same, conv_same, inputs, result

from rnnzoo.cells.convrnn import ConvRNNCell, conv_matrix
from rnnzoo.engines import fused, loop, run_layer, valid_engines
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell

T, B, W = 6, 3, 28


def make(in_channels: int = 1, channels: int = 3, **kw) -> ConvRNNCell:
    torch.manual_seed(0)
    cell = create_cell("convrnn", in_channels * W, channels * W, **kw).to(F64)
    with torch.no_grad():
        cell.bias.uniform_(-0.5, 0.5)
    return cell


def reference(cell, x, state, mask):
    """H_t = tanh(K_x * X_t + K_h * (H_{t-1} . mask) + b), b broadcast over the width."""
    b = cell.bias.repeat_interleave(cell.width)
    (h,) = state
    ys = []
    for x_t in x:
        h_rec = h if mask is None else h * mask
        h = torch.tanh(conv_same(x_t, cell.weight_ih) + conv_same(h_rec, cell.weight_hh) + b)
        ys.append(h)
    return torch.stack(ys), (h,)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("in_channels", [1, 2])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_matches_equations_outputs_and_all_gradients(masked, in_channels, kernel_size):
    cell = make(in_channels, kernel_size=kernel_size)
    x, state, mask = inputs(cell, T, B, masked=masked)
    got, ref = result(loop.run, cell, x, state, mask), result(reference, cell, x, state, mask)
    assert set(got[2]) == {"x", "state0", "weight_ih", "weight_hh", "bias"}
    assert_same(got, ref)


@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
@pytest.mark.parametrize(("n_out", "n_in", "width"), [(1, 1, 28), (4, 3, 28), (2, 5, 4)])
def test_conv_matrix_is_the_same_padded_convolution(n_out, n_in, width, kernel_size):
    torch.manual_seed(0)
    kernel = torch.randn(n_out, n_in, kernel_size, dtype=F64)
    x = torch.randn(7, n_in, width, dtype=F64)
    want = F.conv1d(x, kernel, padding="same").reshape(7, -1)
    got = x.reshape(7, -1) @ conv_matrix(kernel, width).T
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_every_engine_equals_loop(masked):
    cell = make(2)
    valid = valid_engines(cell, "cpu", 0.5 if masked else 0.0)
    assert "fused" in valid and "native" not in valid
    for engine in valid:
        x, state, mask = inputs(cell, T, B, masked=masked)

        def run(c, x_, s, m, engine=engine):
            return run_layer(engine, c, x_, s, m)

        assert_same(result(run, cell, x, state, mask), result(loop.run, cell, x, state, mask))


def test_fused_runs_the_elman_family_on_the_compact_kernels():
    """The kernels go to the fused drivers as they are, (C, C_in*k) and (C, C*k), convolved
    over rows of W (not as their dense banded matrices); the bias repeated over the width."""
    cell = make(2, kernel_size=3)
    params = cell.fused_params()
    assert fused.kernel_name(cell) == params.kernel == "elman_tanh"
    assert params.conv_width == W
    assert torch.equal(params.w_ih, cell.weight_ih.reshape(3, 2 * 3))
    assert torch.equal(params.w_hh, cell.weight_hh.reshape(3, 3 * 3))
    assert torch.equal(params.bias, cell.bias.repeat_interleave(W))


def test_gradcheck_on_a_narrow_row():
    torch.manual_seed(0)
    cell = create_cell("convrnn", 2 * 5, 2 * 5, kernel_size=3, width=5).to(F64)
    x = torch.randn(4, 2, 10, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, 10, dtype=F64, requires_grad=True)

    def fn(x, h0, *params):
        ys, (h,) = loop.run(cell, x, (h0,))
        return ys, h

    assert torch.autograd.gradcheck(fn, (x, h0, *cell.parameters()), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("engine", ["loop", "fused"])
def test_stacked_bidirectional_model_on_rows(engine):
    torch.manual_seed(0)
    model = SequenceClassifier(
        "convrnn", W, 2 * W, num_layers=2, bidirectional=True, dropout=0.2, engine=engine,
        cell_kwargs={"kernel_size": 3},
    ).double()  # fmt: skip
    assert [c.in_channels for c in model.cells] == [1, 1, 4, 4]  # fwd + bwd maps concatenated
    logits, final = model(torch.randn(T, B, W, dtype=F64))
    assert logits.shape == (B, 10) and [s[0].shape for s in final] == [(B, 2 * W)] * 4
    logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pixel_view_is_refused_in_one_line_naming_the_row_view():
    with pytest.raises(UserError) as err:
        SequenceClassifier("convrnn", 1, 2 * W)
    msg = str(err.value)
    assert "\n" not in msg and "data.view=row" in msg and "input_size=1" in msg


@pytest.mark.parametrize(
    ("hidden_size", "kw", "needle"),
    [
        (50, {}, "hidden_size"),
        (2 * W, {"channels": 3}, "hidden_size"),
        (W, {"kernel_size": 4}, "odd"),
    ],
)
def test_bad_sizes_are_one_line_user_errors(hidden_size, kw, needle):
    with pytest.raises(UserError) as err:
        SequenceClassifier("convrnn", W, hidden_size, cell_kwargs=kw)
    assert "\n" not in str(err.value) and needle in str(err.value)


def test_channels_default_from_hidden_size_and_explicit_channels_agree():
    a, b = create_cell("convrnn", W, 4 * W), create_cell("convrnn", W, 4 * W, channels=4)
    assert a.channels == b.channels == 4 and a.weight_hh.shape == (4, 4, 5)


def test_benchmark_times_the_row_cells_at_the_row_view_shape(capsys):
    from rnnzoo.bench import BenchConfig, format_table, run_benchmark

    cfg = BenchConfig(cells=["convrnn"], batch_size=2, repeats=1, warmup=0, builtin=False)
    report = run_benchmark(cfg)
    res = report["cells"]["convrnn"]
    assert res["shape"] == {"seq_len": 28, "input_size": 28, "hidden_size": 448}
    assert set(res["engines"]) == {"loop", "fused"} and "naive64" not in res
    assert "row view's shape: seq_len=28 input_size=28 hidden_size=448" in format_table(report)
