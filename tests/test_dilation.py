"""Dilated layers (time-to-batch) against a float64 reference loop that feeds step t the state
of step t - d directly (outputs, final state and every gradient), on every engine a cell
supports."""

from __future__ import annotations

import pytest
import torch
from cell_checks import F64, assert_same, inputs, result
from train_helpers import tiny_cfg

from rnnzoo import dilation
from rnnzoo.engines import run_layer, valid_engines
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell
from rnnzoo.training import train
from rnnzoo.training.setup import Job

T, B = 7, 3  # 7 steps: padded for every d in (2, 3, 4, 5)
CELLS = {  # name: (input size, hidden size)
    "gru": (4, 5),
    "lstm": (4, 5),
    "intersection": (4, 5),  # its output is not its state
    "leaky": (4, 5),
    "esn": (4, 5),
    "convlstm": (28, 56),
}


def reference(dil: int):
    """Step t reads s_{t-d} (s_0 for t < d), indexing the list of past states directly."""

    def run(cell, x, state, mask):
        ys, states = [], []
        for t, x_t in enumerate(x.unbind(0)):
            prev = state if t < dil else states[t - dil]
            y, s = cell.step(cell.input_projection(x_t[None])[0], prev, mask)
            ys.append(y)
            states.append(s)
        return torch.stack(ys), states[-1]

    return run


def dilated(engine: str, dil: int):
    def run(cell, x, state, mask):
        xb = dilation.to_batch(x, dil)  # (T'/d, d*B, I)
        sb = tuple(dilation.repeat_rows(s, dil) for s in state)
        ys, final = run_layer(engine, cell, xb, sb, dilation.repeat_rows(mask, dil))
        return dilation.from_batch(ys, x.shape[0], dil), dilation.final_state(
            final, x.shape[0], dil
        )

    return run


def make(name: str):
    torch.manual_seed(0)
    cell = create_cell(name, *CELLS[name]).to(F64)
    with torch.no_grad():  # nonzero biases and peepholes: every term is exercised
        for p in cell.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return cell


@pytest.mark.parametrize("dil", [1, 2, 3, 4, 5, 7, 9])
def test_time_to_batch_round_trip(dil):
    x = torch.randn(T, B, 2)
    xb = dilation.to_batch(x, dil)
    steps = dilation.padded_steps(T, dil)
    assert xb.shape == (steps // dil, dil * B, 2)
    assert torch.equal(dilation.from_batch(xb, T, dil), x)
    for t in range(T):  # row r*B + b of block i holds step i*d + r
        i, r = divmod(t, dil)
        assert torch.equal(xb[i, r * B : (r + 1) * B], x[t])
    assert (xb.reshape(steps, B, 2)[T:] == 0).all()  # zero steps after the end


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("dil", [1, 2, 3, 5])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_dilated_layer_equals_reference_on_every_engine(name, dil, masked):
    cell = make(name)
    engines = valid_engines(cell, "cpu", 0.5 if masked else 0.0)
    assert "loop" in engines and (name == "intersection" or "fused" in engines)
    x, state, mask = inputs(cell, T, B, masked=masked)
    ref = result(reference(dil), cell, x, state, mask)
    for engine in engines:
        assert_same(result(dilated(engine, dil), cell, x, state, mask), ref, tol=1e-8)


def test_dilation_changes_the_result():
    # d = 2 is not d = 1: step 1 starts from s_0, not from s_1
    cell = make("gru")
    x, state, _ = inputs(cell, T, B)
    with torch.no_grad():
        one, two = (
            dilated("loop", 1)(cell, x, state, None),
            dilated("loop", 2)(cell, x, state, None),
        )
    torch.testing.assert_close(one[0][0], two[0][0])  # step 0 reads s_0 either way
    assert not torch.allclose(one[0][1], two[0][1])


# --- the model: model.dilations ----------------------------------------------------------


def reference_model(model, x, dils, masks):
    """The stack written out: per layer and direction the reference loop (s_{t-d}), the
    reverse direction over the flipped sequence, dropout between layers (model.dropout, so
    the same random draws), readout on [forward last step, backward position 0]."""
    D, inp, lasts = model.num_directions, x, []
    for layer, dil in enumerate(dils):
        outs, lasts = [], []
        for d in range(D):
            k = layer * D + d
            cell = model.cells[k]
            seq = model.input_maps[k](inp)
            seq = seq.flip(0) if d else seq
            ys, final = reference(dil)(cell, seq, cell.zero_state(x.shape[1]), masks[k])
            outs.append(ys.flip(0) if d else ys)
            lasts.append(final[0])
        inp = torch.cat(outs, dim=-1)
        if layer < len(dils) - 1:
            inp = model.dropout(inp)
    return model.readout(torch.cat(lasts, dim=-1))


@pytest.mark.parametrize("engine", ["loop", "fused"])
@pytest.mark.parametrize("name", ["gru", "lstm", "leaky"])
def test_dilated_bidirectional_model_with_dropout_equals_reference(name, engine):
    dils = [1, 2, 3]
    torch.manual_seed(0)
    model = SequenceClassifier(
        name, 2, 6, num_layers=3, bidirectional=True, dropout=0.3, recurrent_dropout=0.2,
        engine=engine, dilations=dils,
    ).to(F64).train()  # fmt: skip
    x = torch.randn(T, B, 2, dtype=F64)
    masks = model.sample_masks(B)
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for forward in (
        lambda: model(x, masks=masks)[0],
        lambda: reference_model(model, x, dils, masks),
    ):
        torch.manual_seed(7)  # the same dropout draws in both
        logits = forward()
        out.append((logits, torch.autograd.grad(logits.square().sum(), params)))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-8, atol=1e-8)
    for a, b in zip(out[0][1], out[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("bad", [[1, 2], [1, 0, 2], [1, 2.5, 4], "2"])
def test_bad_dilations_are_one_line_user_errors(bad):
    with pytest.raises(UserError) as err:
        SequenceClassifier("gru", 1, 4, num_layers=3, dilations=bad)
    msg = str(err.value)
    assert "\n" not in msg and "model.dilations" in msg and "num_layers=3" in msg


def test_config_key_trains_and_is_kept_in_checkpoints(tiny_mnist_root, tmp_path):
    cfg = tiny_cfg(tiny_mnist_root, "model=gru", "model.num_layers=3", "model.dilations=[1,2,4]")
    result = train(cfg, run_dir=tmp_path)
    assert result["status"] == "completed"
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert saved["model_args"]["dilations"] == [1, 2, 4]
    plain = SequenceClassifier("gru", 1, 4, num_layers=2)
    assert plain.model_args()["dilations"] is None  # older checkpoints compare equal
    truncated = tiny_cfg(
        tiny_mnist_root, "model.num_layers=2", "model.dilations=[1,2]", "trainer.tbptt.steps=5"
    )
    with pytest.raises(UserError, match="dilated"):
        Job.build(truncated)
