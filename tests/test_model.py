"""SequenceClassifier: shapes, stacking, directions, initial states, dropout masks, config."""

from __future__ import annotations

import json

import pytest
import torch
from cell_groups import generic_cells
from omegaconf import OmegaConf
from torch import nn

from rnnzoo.engines import run_layer
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier

ALL_CELLS = generic_cells()
T, B, IN, H, C = 5, 3, 2, 6, 4


def _model(cell: str = "lstm", **kw) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(cell, IN, H, num_classes=C, **kw).double()


def _x(steps: int = T, batch: int = B) -> torch.Tensor:
    return torch.randn(steps, batch, IN, dtype=torch.float64)


SHAPES = {
    "1x1": {},
    "stacked": {"num_layers": 2},
    "bidirectional": {"bidirectional": True},
    "everything": {
        "num_layers": 2,
        "bidirectional": True,
        "learn_init": True,
        "dropout": 0.1,
        "recurrent_dropout": 0.1,
    },
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("cell", ALL_CELLS)
def test_forward_shapes_and_every_parameter_gets_a_gradient(cell, shape):
    model = _model(cell, **shape).train()
    logits, final = model(_x())
    assert logits.shape == (B, C) and logits.dtype == torch.float64
    assert torch.isfinite(logits).all()
    directions = 2 if shape.get("bidirectional") else 1
    assert len(final) == shape.get("num_layers", 1) * directions == len(model.cells)
    for state, cell_module in zip(final, model.cells, strict=True):
        assert [tuple(s.shape) for s in state] == [(B, n) for n in cell_module.state_sizes]
    (logits * torch.randn_like(logits)).sum().backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:  # frozen by design (the esn reservoir)
            assert p.grad is None, name
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_every_layer_outputs_hidden_size_features(cell):
    """+RNN outputs its input width: the model maps the input to H first when they differ."""
    model = _model(cell, num_layers=2, bidirectional=True)
    for k, (input_map, c) in enumerate(zip(model.input_maps, model.cells, strict=True)):
        assert c.output_size == H and c.hidden_size == H
        layer_in = IN if k < 2 else 2 * H
        if c.input_size == layer_in:
            assert isinstance(input_map, nn.Identity)
        else:
            assert isinstance(input_map, nn.Linear) and input_map.in_features == layer_in
            assert c.input_size == H
    assert isinstance(model.readout, nn.Linear) and model.readout.in_features == 2 * H


def test_intersection_maps_only_mismatched_widths():
    maps = SequenceClassifier("rnn+", 3, 6, num_layers=2, bidirectional=True).input_maps
    assert all(isinstance(m, nn.Linear) for m in maps)  # 3 -> 6, then 12 -> 6
    maps = SequenceClassifier("intersection", 6, 6, num_layers=2).input_maps
    assert all(isinstance(m, nn.Identity) for m in maps)
    maps = SequenceClassifier("lstm", 3, 6, num_layers=2, bidirectional=True).input_maps
    assert all(isinstance(m, nn.Identity) for m in maps)


def test_bidirectional_readout_sees_forward_last_and_backward_first_position():
    model = _model("gru", bidirectional=True, engine="loop").eval()
    x = _x()
    logits, final = model(x)
    fwd, fwd_last = run_layer("loop", model.cells[0], x, model.cells[0].zero_state(B))
    bwd, bwd_last = run_layer("loop", model.cells[1], x.flip(0), model.cells[1].zero_state(B))
    expected = model.readout(torch.cat([fwd[-1], bwd[-1]], dim=-1))  # bwd[-1] is position 0
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(final[0][0], fwd_last[0])
    torch.testing.assert_close(final[1][0], bwd_last[0])


def test_bidirectional_next_layer_gets_both_directions_aligned_by_position():
    model = _model("rnn", num_layers=2, bidirectional=True, engine="loop").eval()
    x = _x()
    logits, _ = model(x)
    fwd, _ = run_layer("loop", model.cells[0], x, model.cells[0].zero_state(B))
    bwd, _ = run_layer("loop", model.cells[1], x.flip(0), model.cells[1].zero_state(B))
    layer1 = torch.cat([fwd, bwd.flip(0)], dim=-1)  # (T, B, 2H)
    fwd2, _ = run_layer("loop", model.cells[2], layer1, model.cells[2].zero_state(B))
    bwd2, _ = run_layer("loop", model.cells[3], layer1.flip(0), model.cells[3].zero_state(B))
    torch.testing.assert_close(logits, model.readout(torch.cat([fwd2[-1], bwd2[-1]], dim=-1)))


def test_initial_state_zero_or_learned():
    plain = _model("lstm", num_layers=2, bidirectional=True)
    assert all(s.abs().sum() == 0 for st in plain.initial_state(B) for s in st)
    assert not any("init_state" in k for k in plain.state_dict())
    model = _model("lstm", num_layers=2, bidirectional=True, learn_init=True)
    with torch.no_grad():
        for p in model.init_state.parameters():
            p.normal_()
    states = model.initial_state(B)
    assert len(states) == 4
    for st, params in zip(states, model.init_state, strict=True):
        for s, p in zip(st, params, strict=True):
            assert s.shape == (B, H)
            torch.testing.assert_close(s, p.expand(B, -1))
    zero_start, _ = model(_x(), state=plain.initial_state(B))
    learned_start, _ = model(_x())
    assert not torch.allclose(zero_start, learned_start)


def test_learned_initial_state_gets_gradients():
    model = _model("peephole", num_layers=2, learn_init=True)
    logits, _ = model(_x())
    logits.pow(2).sum().backward()
    names = [n for n, _ in model.named_parameters() if ".init_state." in n]
    assert len(names) == 4  # 2 layers x (h, c)
    for name, p in model.named_parameters():
        if ".init_state." in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dropout_between_layers_only():
    one = _model("gru", dropout=0.5).train()
    x = _x()
    torch.testing.assert_close(one(x)[0], one.eval()(x)[0])  # nothing dropped before readout
    two = _model("gru", num_layers=2, dropout=0.5).train()
    a, b = two(x)[0], two(x)[0]
    assert not torch.allclose(a, b)
    torch.testing.assert_close(two.eval()(x)[0], two(x)[0])


# ---- recurrent dropout ---------------------------------------------------------------------------


def test_sample_masks_shape_scaling_and_eval():
    model = _model("ugrnn", num_layers=2, bidirectional=True, recurrent_dropout=0.25).train()
    masks = model.sample_masks(4000)
    assert len(masks) == 4
    for m in masks:
        assert m.shape == (4000, H) and m.dtype == torch.float64
        values = set(m.unique().tolist())
        assert values == {0.0, 1.0 / 0.75}
        assert abs((m == 0).double().mean().item() - 0.25) < 0.02
    assert model.eval().sample_masks(B) is None
    assert _model("ugrnn").train().sample_masks(B) is None  # rate 0


def _spy_masks(model, monkeypatch) -> list[list]:
    seen = [[] for _ in model.cells]
    for k, cell in enumerate(model.cells):

        def spy(xp_t, state, rec_mask=None, _step=cell.step, _k=k):
            seen[_k].append(rec_mask)
            return _step(xp_t, state, rec_mask)

        monkeypatch.setattr(cell, "step", spy)
    return seen


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_one_recurrent_dropout_mask_per_sequence(cell, monkeypatch):
    model = _model(cell, num_layers=2, recurrent_dropout=0.3, engine="loop").train()
    seen = _spy_masks(model, monkeypatch)
    model(_x())
    for per_step in seen:
        assert len(per_step) == T and per_step[0] is not None
        assert per_step[0].shape == (B, H)
        assert all(m is per_step[0] for m in per_step)  # the same mask at every step
    assert seen[0][0] is not seen[1][0]  # layers draw their own masks

    seen = _spy_masks(model.eval(), monkeypatch)
    model(_x())
    assert all(m is None for per_step in seen for m in per_step)


def test_passed_masks_are_used():
    model = _model("lstm", num_layers=2, recurrent_dropout=0.5).train()
    x = _x()
    masks = model.sample_masks(B)
    a, b = model(x, masks=masks)[0], model(x, masks=masks)[0]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, model(x, masks=model.sample_masks(B))[0])
    ones = [torch.ones(B, H, dtype=torch.float64) for _ in model.cells]
    torch.testing.assert_close(model(x, masks=ones)[0], model.eval()(x)[0])


def test_chunked_forward_with_carried_state_and_masks_equals_full_forward():
    """What truncated BPTT relies on: state and masks carry over chunk boundaries."""
    model = _model("lstm", num_layers=2, recurrent_dropout=0.3, learn_init=True).train()
    x = _x(steps=8)
    masks = model.sample_masks(B)
    full, full_state = model(x, masks=masks)
    _, state = model(x[:3], masks=masks)
    state = [tuple(s.detach() for s in st) for st in state]
    last, last_state = model(x[3:], state=state, masks=masks)
    torch.testing.assert_close(last, full)
    for a, b in zip(last_state, full_state, strict=True):
        torch.testing.assert_close(a, b)


# ---- engines, hooks ------------------------------------------------------------------------------


def test_engine_is_resolved_lazily_for_the_model():
    assert _model("lstm").engine_name in ("native", "fused")
    assert _model("lstm", recurrent_dropout=0.1).engine_name in ("loop", "fused")
    assert _model("lstm", engine="loop").engine_name == "loop"
    model = _model("ugrnn", engine="native")  # valid name: accepted until it meets a device
    with pytest.raises(UserError, match="valid engines for it: auto"):
        model.engine_name  # noqa: B018
    with pytest.raises(UserError, match="'native'"):
        model(_x())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_engine_follows_the_device():
    model = _model("lstm").float()
    assert model(_x().float())[0].shape == (B, C)
    model.cuda()
    assert model.engine_name == "native"
    logits, _ = model(_x().float().cuda())
    assert logits.is_cuda


def test_post_step_calls_every_cell_hook():
    model = _model("indrnn", num_layers=2)
    limit = model.cells[0].recurrent_max_abs
    with torch.no_grad():
        for c in model.cells:
            c.weight_hh.fill_(5.0)
    model.post_step_()
    for c in model.cells:
        assert c.weight_hh.abs().max().item() <= limit + 1e-12


def test_bad_input_shape_is_rejected():
    with pytest.raises(ValueError, match=r"expected input \(T>=1, B, 2\)"):
        _model()(torch.randn(T, B, IN + 1, dtype=torch.float64))


# ---- construction and config ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dropout": 1.0},
        {"recurrent_dropout": -0.1},
        {"hidden_size": 0},
        {"num_layers": 0},
        {"cell": "lstmm"},
        {"cell_kwargs": {"nope": 1}},
        {"engine": "fast"},
    ],
)
def test_bad_arguments_are_one_line_user_errors(kwargs):
    args = {"cell": "lstm", "input_size": IN, "hidden_size": H, **kwargs}
    with pytest.raises(UserError) as info:
        SequenceClassifier(**args)
    assert "\n" not in str(info.value)


def test_from_config_and_model_args_rebuild_an_identical_model():
    cfg = OmegaConf.create(
        {
            "cell": "rnn+",
            "hidden_size": H,
            "num_layers": 2,
            "dropout": 0.1,
            "recurrent_dropout": 0.2,
            "bidirectional": True,
            "learn_init": True,
            "engine": "loop",
            "cell_kwargs": {"gate_bias": 0.5},
        }
    )
    model = SequenceClassifier.from_config(cfg, input_size=IN, num_classes=C)
    assert model.cells[0].gate_bias == 0.5
    args = model.model_args()
    assert args == {
        "cell": "intersection",
        "input_size": IN,
        "hidden_size": H,
        "num_classes": C,
        "num_layers": 2,
        "dropout": 0.1,
        "recurrent_dropout": 0.2,
        "bidirectional": True,
        "learn_init": True,
        "engine": "loop",
        "cell_kwargs": {"gate_bias": 0.5},
        "dilations": None,  # undilated (all 1)
    }
    args = json.loads(json.dumps(args))  # checkpoints may store it as JSON
    rebuilt = SequenceClassifier(**args)
    rebuilt.load_state_dict(model.state_dict())  # strict: same parameter names and shapes
    assert rebuilt.model_args() == model.model_args()
    assert repr(rebuilt) == repr(model)
    x = torch.randn(T, B, IN)
    torch.testing.assert_close(rebuilt.eval()(x)[0], model.eval()(x)[0])


def test_from_config_defaults_nulls_and_errors():
    model = SequenceClassifier.from_config(
        {"cell": "gru", "hidden_size": 4, "engine": None, "cell_kwargs": None}, 1, 10
    )
    assert model.model_args()["engine"] == "auto" and model.model_args()["cell_kwargs"] == {}
    assert model.num_layers == 1 and not model.bidirectional
    with pytest.raises(UserError, match="unknown model config keys \\['hiden_size'\\]"):
        SequenceClassifier.from_config({"cell": "gru", "hidden_size": 4, "hiden_size": 5}, 1, 10)
    with pytest.raises(UserError, match="needs hidden_size"):
        SequenceClassifier.from_config({"cell": "gru"}, 1, 10)
