"""The ``convlstm`` cell against a float64 reference written from its module docstring's
equations (Shi et al. 2015 eq. 3 in 1-D; outputs and every gradient), with and without the
peepholes, every engine against ``loop``, its init, and the full model on rows."""

from __future__ import annotations

import pytest
import torch
from cell_checks import F64, assert_same, conv_same, inputs, result
from train_helpers import tiny_cfg

from rnnzoo.cells.convlstm import ConvLSTMCell
from rnnzoo.engines import fused, loop, run_layer, valid_engines
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell
from rnnzoo.training import train
from rnnzoo.training.setup import Job

T, B, W = 6, 3, 28


def make(in_channels: int = 1, channels: int = 2, **kw) -> ConvLSTMCell:
    torch.manual_seed(0)
    cell = create_cell("convlstm", in_channels * W, channels * W, **kw).to(F64)
    with torch.no_grad():  # nonzero biases and peepholes: every term is exercised
        cell.bias.uniform_(-0.5, 0.5)
        if cell.weight_ch is not None:
            cell.weight_ch.uniform_(-0.5, 0.5)
    return cell


def reference(cell, x, state, mask):
    """Gate by gate: i, f see C_{t-1} through P_i, P_f; o sees C_t through P_o."""
    W_ = cell.width
    kx = cell.weight_ih.chunk(4)  # i, f, g, o: (C, C_in, k) each
    kh = cell.weight_hh.chunk(4)
    b = [bb.repeat_interleave(W_) for bb in cell.bias.chunk(4)]
    if cell.weight_ch is None:
        p_i = p_f = p_o = 0.0
    else:
        p_i, p_f, p_o = (p.reshape(-1) for p in cell.weight_ch)
    h, c = state
    ys = []
    for x_t in x:
        h_rec = h if mask is None else h * mask

        def pre(g, x_t=x_t, h_rec=h_rec):
            return conv_same(x_t, kx[g]) + conv_same(h_rec, kh[g]) + b[g]

        i = torch.sigmoid(pre(0) + p_i * c)
        f = torch.sigmoid(pre(1) + p_f * c)
        c = f * c + i * torch.tanh(pre(2))
        o = torch.sigmoid(pre(3) + p_o * c)
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), (h, c)


@pytest.mark.parametrize("peephole", [True, False], ids=["peephole", "plain"])
@pytest.mark.parametrize("in_channels", [1, 2])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_matches_equations_outputs_and_all_gradients(masked, in_channels, peephole):
    cell = make(in_channels, kernel_size=3, peephole=peephole)
    x, state, mask = inputs(cell, T, B, masked=masked)
    got, ref = result(loop.run, cell, x, state, mask), result(reference, cell, x, state, mask)
    names = {"x", "state0", "state1", "weight_ih", "weight_hh", "bias"}
    assert set(got[2]) == names | ({"weight_ch"} if peephole else set())
    assert_same(got, ref)


@pytest.mark.parametrize("peephole", [True, False], ids=["peephole", "plain"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_every_engine_equals_loop(masked, peephole):
    cell = make(2, peephole=peephole)
    valid = valid_engines(cell, "cpu", 0.5 if masked else 0.0)
    assert "fused" in valid and "native" not in valid
    assert fused.kernel_name(cell) == ("peephole" if peephole else "lstm")
    for engine in valid:
        x, state, mask = inputs(cell, T, B, masked=masked)

        def run(c, x_, s, m, engine=engine):
            return run_layer(engine, c, x_, s, m)

        assert_same(result(run, cell, x, state, mask), result(loop.run, cell, x, state, mask))


def test_fused_params_are_the_compact_kernels_in_gate_order():
    cell = make(2, kernel_size=3)
    params = cell.fused_params()
    assert params.kernel == "peephole" and params.conv_width == W
    assert torch.equal(params.w_ih, cell.weight_ih.reshape(8, 2 * 3))  # (4C, C_in*k), i f g o
    assert torch.equal(params.w_hh, cell.weight_hh.reshape(8, 2 * 3))  # (4C, C*k)
    assert torch.equal(params.extra, cell.weight_ch.reshape(-1))


def test_init_forget_bias_zero_peepholes_conv_fan_in():
    torch.manual_seed(0)
    cell = create_cell("convlstm", W, 16 * W, kernel_size=5, forget_bias=2.0)
    C = 16
    assert torch.equal(cell.bias[C : 2 * C], torch.full((C,), 2.0))
    assert cell.bias[:C].abs().sum() == 0 and cell.bias[2 * C :].abs().sum() == 0
    assert cell.weight_ch.abs().sum() == 0
    bound = 1.0 / (C * 5) ** 0.5  # torch.nn.Conv1d: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert cell.weight_hh.abs().max() <= bound and cell.weight_hh.abs().max() > 0.95 * bound


@pytest.mark.parametrize("engine", ["loop", "fused"])
def test_stacked_bidirectional_model_on_rows(engine):
    torch.manual_seed(0)
    model = SequenceClassifier(
        "convlstm", W, 2 * W, num_layers=2, bidirectional=True, recurrent_dropout=0.2,
        engine=engine, cell_kwargs={"kernel_size": 3},
    ).double()  # fmt: skip
    logits, final = model(torch.randn(T, B, W, dtype=F64))
    assert logits.shape == (B, 10)
    assert [tuple(s.shape) for st in final for s in st] == [(B, 2 * W)] * 8
    logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pixel_view_is_refused_in_one_line_naming_the_row_view():
    with pytest.raises(UserError) as err:
        SequenceClassifier("convlstm", 1, 16 * W)
    msg = str(err.value)
    assert "\n" not in msg and "data.view=row" in msg and "input_size=1" in msg


@pytest.mark.parametrize("cell", ["convlstm", "convrnn"])
def test_training_refuses_the_pixel_view_and_trains_on_rows(cell, tiny_mnist_root, tmp_path):
    pixel = tiny_cfg(tiny_mnist_root, f"model={cell}", "data.view=pixel", "data.name=smnist")
    with pytest.raises(UserError) as err:
        Job.build(pixel)
    assert "\n" not in str(err.value) and "data.view=row" in str(err.value)
    rows = tiny_cfg(tiny_mnist_root, f"model={cell}", "model.hidden_size=56", "trainer.epochs=1")
    result = train(rows, run_dir=tmp_path)
    assert result["status"] == "completed" and result["engine"] == "fused"
