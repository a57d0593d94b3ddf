"""The ``esn`` cell: a float64 reference written from its module docstring's equations
(outputs, and the gradients that exist: input and initial state), the reservoir's
construction (spectral radius, sparsity, input scaling, seeding), frozen weights that
never get a gradient, a forward-only reservoir in training, and every engine against
``loop``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cell_checks import F64, assert_same, inputs, result
from train_helpers import read_metrics, tiny_cfg

from rnnzoo.cells.esn import EchoStateCell
from rnnzoo.engines import fused_build, loop, run_layer, valid_engines
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell
from rnnzoo.training import train
from rnnzoo.training.setup import Job

T, B, IN, H = 7, 4, 5, 6


def make(**kw) -> EchoStateCell:
    torch.manual_seed(0)
    return create_cell("esn", IN, H, **kw).to(F64)


def reference(cell, x, state, mask):
    """h~_t = tanh(W_in x_t + b + W (h_{t-1} * mask)); h_t = (1 - a) h_{t-1} + a h~_t."""
    W_in, W, b, a = cell.weight_ih, cell.weight_hh, cell.bias, cell.leak_rate
    (h,) = state
    ys = []
    for x_t in x:
        h_rec = h if mask is None else h * mask
        h = (1.0 - a) * h + a * torch.tanh(x_t @ W_in.T + b + h_rec @ W.T)
        ys.append(h)
    return torch.stack(ys), (h,)


@pytest.mark.parametrize("leak_rate", [1.0, 0.3])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_matches_equations_outputs_and_gradients(masked, leak_rate):
    cell = make(leak_rate=leak_rate, sparsity=0.5)
    x, state, mask = inputs(cell, T, B, masked=masked)
    got, ref = result(loop.run, cell, x, state, mask), result(reference, cell, x, state, mask)
    assert set(got[2]) == {"x", "state0"}  # no trainable parameter
    assert_same(got, ref)


def test_every_weight_is_frozen():
    cell = make()
    names = {n for n, _ in cell.named_parameters()}
    assert names == {"weight_ih", "bias", "weight_hh"}
    assert not any(p.requires_grad for p in cell.parameters())
    model = SequenceClassifier("esn", IN, H, num_layers=2).double()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"readout.weight", "readout.bias"}


@pytest.mark.parametrize(("radius", "sparsity"), [(0.9, 0.9), (1.3, 0.0), (0.5, 0.95)])
def test_reservoir_spectral_radius_and_sparsity(radius, sparsity):
    torch.manual_seed(3)
    cell = create_cell("esn", 2, 300, spectral_radius=radius, sparsity=sparsity)
    w = cell.weight_hh.double()
    assert abs(torch.linalg.eigvals(w).abs().max().item() - radius) < 1e-4
    zero_fraction = (w == 0).double().mean().item()
    assert abs(zero_fraction - sparsity) < 0.01  # 90,000 Bernoulli draws: sd < 0.002


def test_input_weights_uniform_in_input_scaling():
    torch.manual_seed(0)
    cell = create_cell("esn", 50, 200, input_scaling=0.3)
    for w in (cell.weight_ih, cell.bias):
        assert w.abs().max() <= 0.3 and w.abs().max() > 0.29
        assert abs(w.mean().item()) < 0.03
    # U(-s, s) has variance s^2 / 3
    assert abs(cell.weight_ih.var().item() - 0.09 / 3) < 0.003


def test_reservoir_follows_the_seed():
    def weights(seed):
        torch.manual_seed(seed)
        return create_cell("esn", 3, 20).state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["weight_hh"], c["weight_hh"])


def test_training_runs_the_reservoir_forward_only():
    """Only the readout learns: the reservoir builds no graph (no per-step buffers, no
    backward through time) and a training step changes nothing but the readout."""
    torch.manual_seed(0)
    model = SequenceClassifier("esn", IN, H, num_layers=2, engine="loop").train()
    x, y = torch.randn(T, B, IN), torch.randint(0, 10, (B,))
    logits, final = model(x)
    assert all(not s.requires_grad and s.grad_fn is None for state in final for s in state)
    assert logits.requires_grad  # the readout's graph only
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    F.cross_entropy(logits, y).backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"readout.weight", "readout.bias"}


@pytest.mark.parametrize(
    "kw",
    [{"spectral_radius": 0.0}, {"sparsity": 1.0}, {"input_scaling": -1.0}, {"leak_rate": 0.0}],
)
def test_bad_kwargs_are_one_line_user_errors(kw):
    with pytest.raises(UserError) as err:
        SequenceClassifier("esn", 1, 8, cell_kwargs=kw)
    msg = str(err.value)
    assert "\n" not in msg and next(iter(kw)) in msg


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_every_engine_equals_loop(masked):
    cell = make()
    others = [e for e in valid_engines(cell, "cpu", 0.5 if masked else 0.0) if e != "loop"]
    assert others == ["fused"]  # the "leaky" kernel family; no torch built-in
    for engine in others:
        x, state, mask = inputs(cell, T, B, masked=masked)
        ref = result(loop.run, cell, x, state, mask)

        def run(c, x_, s, m, engine=engine):
            return run_layer(engine, c, x_, s, m)

        assert_same(result(run, cell, x, state, mask), ref, tol=1e-8)


def test_training_job_optimizes_only_the_readout(tiny_mnist_root, tmp_path):
    cfg = tiny_cfg(tiny_mnist_root, "model=esn", "model.hidden_size=8")
    job = Job.build(cfg)
    in_optimizer = {id(p) for group in job.optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in job.model.readout.parameters()}
    result = train(cfg, run_dir=tmp_path)
    assert result["status"] == "completed" and result == read_metrics(tmp_path)
    reservoir = 8 * 28 + 8 + 8 * 8  # W_in, b, W (row view: 28 inputs)
    assert result["trainable_params"] == 8 * 10 + 10  # the readout
    assert result["params"] == reservoir + result["trainable_params"]


def test_fused_engine_keeps_no_per_step_buffers_in_training(monkeypatch):
    """The fused kernel's "train" flag (keep per-step buffers for backward) stays off for a
    training forward of the esn: nothing recurrent needs a gradient."""
    ops = fused_build.load_ops()
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(ops, name)

        def forward(self, *args):
            seen.append(args[-1])  # the "train" flag
            return ops.forward(*args)

    monkeypatch.setattr(fused_build, "load_ops", lambda: Spy())
    torch.manual_seed(0)
    model = SequenceClassifier("esn", IN, H, num_layers=2, engine="fused").train()
    logits, _ = model(torch.randn(T, B, IN))
    F.cross_entropy(logits, torch.randint(0, 10, (B,))).backward()
    assert seen == [False, False] and model.readout.weight.grad is not None
    seen.clear()  # an initial state that needs a gradient (e.g. learn_init) needs BPTT
    model(torch.randn(T, B, IN), state=[(torch.zeros(B, H, requires_grad=True),)] * 2)
    assert seen == [True, True]


def test_benchmark_floor_of_a_frozen_reservoir_is_forward_only():
    from rnnzoo.bench.floor import gemm_layers

    torch.manual_seed(0)
    esn = SequenceClassifier("esn", 1, 8, num_layers=2, engine="loop")
    rnn = SequenceClassifier("rnn", 1, 8, num_layers=2, engine="loop")
    assert [layer.backward for layer in gemm_layers(esn)] == [False, False]
    assert [layer.dx for layer in gemm_layers(esn)] == [False, False]
    assert [layer.backward for layer in gemm_layers(rnn)] == [True, True]
