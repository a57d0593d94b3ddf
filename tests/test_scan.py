"""The scan engine: the parallel scans themselves, scan == step (the loop) at sMNIST length
with a random initial state, recurrent-dropout masks, and in a full model with truncated
BPTT; every engine that runs these cells against the loop."""

from __future__ import annotations

import pytest
import torch

import rnnzoo
from rnnzoo.engines import resolve_engine, run_layer, valid_engines
from rnnzoo.engines.scan import linear_scan, log_scan, scan, supports
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.training.tbptt import forward_pieces

F64 = torch.float64
CELLS = ["lru", "mingru", "minlstm"]


def _sequential(a, b, h):
    hs = []
    for t in range(b.shape[0]):
        h = (a if a.dim() < b.dim() else a[t]) * h + b[t]
        hs.append(h)
    return torch.stack(hs)


@pytest.mark.parametrize("steps", [1, 2, 7, 64, 101])
@pytest.mark.parametrize("kind", ["real", "complex", "constant"])
def test_linear_scan_matches_sequential(steps, kind):
    gen = torch.Generator().manual_seed(steps)
    shape = (steps, 3, 5)
    if kind == "complex":
        a = torch.polar(torch.rand(shape, generator=gen, dtype=F64), torch.rand(shape, dtype=F64))
        b = torch.randn(shape, generator=gen, dtype=torch.complex128)
    else:
        a = torch.rand(shape[-1:] if kind == "constant" else shape, generator=gen, dtype=F64)
        b = torch.randn(shape, generator=gen, dtype=F64)
    torch.testing.assert_close(linear_scan(a, b), _sequential(a, b, torch.zeros_like(b[0])))


@pytest.mark.parametrize("h0_kind", ["random", "zero", "negative"])
def test_log_scan_carries_any_initial_state(h0_kind):
    """The known pitfall: log-space minGRU code takes log(h0) and fails for h0 <= 0."""
    gen = torch.Generator().manual_seed(0)
    log_a = -torch.rand(50, 2, 4, generator=gen, dtype=F64) * 3
    log_b = torch.randn(50, 2, 4, generator=gen, dtype=F64)
    h0 = {
        "random": torch.randn(2, 4, generator=gen, dtype=F64),
        "zero": torch.zeros(2, 4, dtype=F64),
        "negative": -torch.rand(2, 4, generator=gen, dtype=F64) - 1,
    }[h0_kind].requires_grad_()
    got = log_scan(log_a, log_b, h0)
    ref = _sequential(log_a.exp(), log_b.exp(), h0)
    torch.testing.assert_close(got, ref)
    w = torch.randn_like(got)
    (g_got,) = torch.autograd.grad((got * w).sum(), h0)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), h0)
    assert torch.isfinite(g_got).all()
    torch.testing.assert_close(g_got, g_ref)


def _cell(name, input_size=3, hidden=5, dtype=F64, **kw):
    torch.manual_seed(0)
    cell = rnnzoo.create_cell(name, input_size, hidden, **kw).to(dtype)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return cell


def _compare(cell, x, state, mask=None, rtol=1e-9, atol=1e-11, engine="scan"):
    """Outputs, final state and the gradients of x, the state and every parameter."""
    results = []
    for name in ("loop", engine):
        ys, last = run_layer(name, cell, x, state, mask)
        loss = (ys * torch.cos(torch.arange(ys.numel(), dtype=ys.dtype).view_as(ys))).sum()
        loss = loss + (last[0] * 0.3).sum()
        grads = torch.autograd.grad(loss, (x, *state, *cell.parameters()))
        results.append((ys, last[0], grads))
    (ys0, h0, g0), (ys1, h1, g1) = results
    torch.testing.assert_close(ys1, ys0, rtol=rtol, atol=atol)
    torch.testing.assert_close(h1, h0, rtol=rtol, atol=atol)
    names = ["x", "h0", *(n for n, _ in cell.named_parameters())]
    for n, a, b in zip(names, g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("block", ["none", "glu"])
@pytest.mark.parametrize("name", CELLS)
def test_scan_equals_step_at_784_steps_with_random_initial_state(name, block):
    cell = _cell(name, block=block)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(784, 2, 3, generator=gen, dtype=F64, requires_grad=True)
    state = (torch.randn(2, cell.state_sizes[0], generator=gen, dtype=F64, requires_grad=True),)
    _compare(cell, x, state)


@pytest.mark.parametrize("name", CELLS)
def test_scan_equals_step_with_recurrent_dropout_mask(name):
    cell = _cell(name, hidden=6)
    x = torch.randn(40, 4, 3, dtype=F64, requires_grad=True)
    state = (torch.randn(4, cell.state_sizes[0], dtype=F64, requires_grad=True),)
    mask = torch.bernoulli(torch.full((4, 6), 0.7, dtype=F64)) / 0.7
    mask[0, :3] = 0.0  # dropped units, whose log is -inf in log space
    _compare(cell, x, state, mask)


@pytest.mark.parametrize("name", CELLS)
def test_scan_float32_at_784_steps_is_close_and_finite(name):
    cell = _cell(name, hidden=16, dtype=torch.float32)
    x = 3 * torch.randn(784, 8, 3, requires_grad=True)  # saturating gates: long products
    state = (torch.randn(8, cell.state_sizes[0], requires_grad=True),)
    ys, (h,) = run_layer("scan", cell, x, state)
    grads = torch.autograd.grad(ys.sum() + h.sum(), (x, *state, *cell.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    _compare(cell, x, state, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_log_space_scan_equals_linear_scan_at_784_steps(name, masked):
    """The Heinsen path (method="log") solves the same recurrence, h0 and masks included."""
    cell = _cell(name, hidden=6)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(784, 3, 3, generator=gen, dtype=F64, requires_grad=True)
    h0 = torch.randn(3, 6, generator=gen, dtype=F64, requires_grad=True)
    mask = None
    if masked:
        mask = torch.bernoulli(torch.full((3, 6), 0.7, dtype=F64), generator=gen) / 0.7
        mask[0, :2] = 0.0
    rec = cell.recurrence(cell.input_projection(x))
    outs = [scan(rec, h0, mask, method=m) for m in ("linear", "log")]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-9, atol=1e-11)
    w = torch.randn_like(outs[0])
    wrt = (x, h0, *cell.parameters())
    g_lin, g_log = (torch.autograd.grad((o * w).sum(), wrt, retain_graph=True) for o in outs)
    for a, b in zip(g_log, g_lin, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_scan_method_errors():
    cell = _cell("lru")
    rec = cell.recurrence(cell.input_projection(torch.randn(4, 2, 3, dtype=F64)))
    h0 = torch.zeros(2, 5, dtype=torch.complex128)
    with pytest.raises(ValueError, match="log-space coefficients"):
        scan(rec, h0, method="log")
    with pytest.raises(ValueError, match="valid: linear, log"):
        scan(rec, h0, method="blelloch")


@pytest.mark.parametrize("mode", ["final", "chunks"])
@pytest.mark.parametrize("name", CELLS)
def test_scan_equals_loop_in_a_model_with_truncated_bptt(name, mode):
    """Two layers; the state carried (and detached) between pieces, learned initial state."""
    x = torch.randn(30, 4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    per_engine = []
    for engine in ("loop", "scan"):
        torch.manual_seed(0)
        model = SequenceClassifier(
            name, 2, 6, num_layers=2, learn_init=True, engine=engine, cell_kwargs={"block": "glu"}
        ).to(F64)
        with torch.no_grad():
            for p in model.init_state.parameters():
                p.normal_()
        assert model.engine_name == engine
        logits, grads = [], []
        for piece in forward_pieces(model, x, steps=8, mode=mode, masks=None):
            logits.append(piece)
            params = list(model.parameters())  # the learned h0 only reaches the first piece
            grads.append(torch.autograd.grad(piece.logsumexp(1).sum(), params, allow_unused=True))
        per_engine.append((logits, grads))
    (l0, g0), (l1, g1) = per_engine
    assert len(l1) == (4 if mode == "chunks" else 1)
    for a, b in zip(l1, l0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    for piece0, piece1 in zip(g0, g1, strict=True):
        assert [a is None for a in piece1] == [b is None for b in piece0]
        assert sum(a is not None for a in piece1) >= len(piece1) - 2  # all but init_state
        for a, b in zip(piece1, piece0, strict=True):
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", CELLS)
def test_every_engine_matches_loop(name):
    cell = _cell(name, block="glu")
    x = torch.randn(33, 3, 3, dtype=F64, requires_grad=True)
    state = (torch.randn(3, cell.state_sizes[0], dtype=F64, requires_grad=True),)
    engines = valid_engines(cell, "cpu")
    assert "scan" in engines and "loop" in engines
    for engine in engines:
        _compare(cell, x, state, engine=engine)


def test_auto_and_errors():
    lstm = rnnzoo.create_cell("lstm", 1, 4)
    assert not supports(lstm, torch.device("cpu"), 0.0)
    with pytest.raises(UserError, match="engine 'scan' cannot run LSTMCell"):
        resolve_engine("scan", lstm, "cpu")
    for name in CELLS:
        cell = rnnzoo.create_cell(name, 1, 4)
        assert resolve_engine("auto", cell, "cuda") == "scan"  # no cuDNN or C++ kernel there
        assert resolve_engine("auto", cell, "cpu") in ("fused", "scan")


@pytest.mark.parametrize("engine", ["fused", "scan", "loop"])
@pytest.mark.parametrize("name", CELLS)
def test_last_only_output_is_the_last_step_of_the_full_output(name, engine):
    """The top layer maps only its last state to an output (``last_only``): the same value
    and the same gradients as the last step of the full (T, B, O) output."""
    cell = _cell(name, block="glu")
    x = torch.randn(9, 3, 3, dtype=F64, requires_grad=True)
    state = (torch.randn(3, cell.state_sizes[0], dtype=F64, requires_grad=True),)
    ys, final = run_layer(engine, cell, x, state)
    last, final_last = run_layer(engine, cell, x, state, last_only=True)
    assert last.shape == (1, 3, cell.output_size)
    torch.testing.assert_close(last, ys[-1:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final_last[0], final[0], rtol=1e-12, atol=1e-12)
    inputs = [x, *state, *cell.parameters()]
    g_full = torch.autograd.grad(ys[-1].sin().sum() + final[0].sum(), inputs)
    g_last = torch.autograd.grad(last[0].sin().sum() + final_last[0].sum(), inputs)
    for a, b in zip(g_last, g_full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("engine", ["fused", "scan"])
def test_top_layer_last_only_in_bidirectional_dilated_stack_equals_loop(engine):
    """Bidirectional, dilated 2-layer LRU stack: logits and every gradient equal the loop's
    (the top layer reads position T-1 forward and position 0 backward)."""
    x = torch.randn(11, 3, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    out = []
    for eng in ("loop", engine):
        torch.manual_seed(0)
        model = SequenceClassifier(
            "lru", 2, 6, num_layers=2, bidirectional=True, dilations=[1, 2], engine=eng
        ).to(F64)
        logits, _ = model(x)
        out.append((logits, torch.autograd.grad(logits.logsumexp(1).sum(), model.parameters())))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-10, atol=1e-12)
    for a, b in zip(out[1][1], out[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
