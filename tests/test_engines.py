"""Engines: the loop reference, native == loop, engine resolution and its errors."""

from __future__ import annotations

import types

import pytest
import torch
from cell_groups import generic_cells

import rnnzoo
import rnnzoo.cells  # noqa: F401  (registers the cells)
from rnnzoo import engines
from rnnzoo.engines import resolve_engine, run_layer, valid_engines
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier

NATIVE_CELLS = ["rnn", "irnn", "lstm", "gru"]
ALL_CELLS = generic_cells()
T, B, IN, H = 6, 3, 4, 5


def _cell(name: str, input_size: int = IN, hidden_size: int = H, **kw):
    torch.manual_seed(0)
    cell = rnnzoo.create_cell(name, input_size, hidden_size, **kw).double()
    with torch.no_grad():  # move off special inits (identity, zero biases) to test all paths
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return cell


def _random_state(cell, batch: int = B) -> tuple[torch.Tensor, ...]:
    return tuple(
        torch.randn(batch, n, dtype=torch.float64, requires_grad=True) for n in cell.state_sizes
    )


def _assert_close(a, b, what: str) -> None:
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=lambda m: f"{what}: {m}")


# ---- loop: the reference -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_CELLS)
def test_loop_gradients_match_finite_differences(name):
    """Gradients w.r.t. the input at every step and the initial state are right (gradcheck)."""
    cell = _cell(name, hidden_size=3)
    x = torch.randn(5, 2, IN, dtype=torch.float64, requires_grad=True)
    state = _random_state(cell, batch=2)

    def fn(x, *state):
        ys, last = run_layer("loop", cell, x, state)
        return (ys, *last)

    assert torch.autograd.gradcheck(fn, (x, *state), eps=1e-6, atol=1e-5)


def _consumers_of_projection(run, cell, monkeypatch) -> list[str]:
    """Names of the autograd nodes that read the input projection directly."""
    seen = {}
    projection = cell.input_projection

    def spy(x):
        xp = projection(x)
        seen["node"] = xp.grad_fn
        return xp

    monkeypatch.setattr(cell, "input_projection", spy)
    x = torch.randn(T, B, IN, dtype=torch.float64, requires_grad=True)
    ys, _ = run(cell, x, cell.zero_state(B))
    consumers, stack, visited = [], [ys.sum().grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for nxt, _ in node.next_functions:
            if nxt is seen["node"]:
                consumers.append(node.name())
            stack.append(nxt)
    return consumers


@pytest.mark.parametrize("name", ALL_CELLS)
def test_loop_unbinds_the_projection_instead_of_indexing(name, monkeypatch):
    """xp[t] in the loop makes backward O(T^2); the graph must read xp through ONE unbind."""
    consumers = _consumers_of_projection(engines.loop.run, _cell(name), monkeypatch)
    assert consumers == ["UnbindBackward0"]


def test_projection_check_detects_indexing(monkeypatch):
    """The structural check above fails for a loop that indexes xp[t]."""

    def indexing_loop(cell, x, state, rec_mask=None):
        xp = cell.input_projection(x)
        ys = []
        for t in range(xp.size(0)):
            y, state = cell.step(xp[t], state, rec_mask)
            ys.append(y)
        return torch.stack(ys), state

    consumers = _consumers_of_projection(indexing_loop, _cell("lstm"), monkeypatch)
    assert consumers == ["SelectBackward0"] * T


def test_loop_applies_the_same_mask_at_every_step(monkeypatch):
    cell = _cell("lstm")
    mask = torch.rand(B, H, dtype=torch.float64)
    seen = []
    step = cell.step

    def spy(xp_t, state, rec_mask=None):
        seen.append(rec_mask)
        return step(xp_t, state, rec_mask)

    monkeypatch.setattr(cell, "step", spy)
    ys, _ = run_layer(
        "loop", cell, torch.randn(T, B, IN, dtype=torch.float64), cell.zero_state(B), mask
    )
    assert ys.shape == (T, B, H)
    assert len(seen) == T and all(m is mask for m in seen)


# ---- native == loop ------------------------------------------------------------------------------


def _outputs_and_grads(engine, cell, x, state):
    ys, last = run_layer(engine, cell, x, state)
    loss = (ys * torch.linspace(-1, 1, ys.numel(), dtype=ys.dtype).view_as(ys)).sum()
    loss = loss + sum((s * s).sum() for s in last)
    grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()])
    return ys, last, grads


@pytest.mark.parametrize("name", NATIVE_CELLS)
def test_native_layer_matches_loop(name):
    cell = _cell(name)
    x = torch.randn(T, B, IN, dtype=torch.float64, requires_grad=True)
    state = _random_state(cell)
    ref = _outputs_and_grads("loop", cell, x, state)
    got = _outputs_and_grads("native", cell, x, state)
    _assert_close(got[0], ref[0], "outputs")
    for a, b in zip(got[1], ref[1], strict=True):
        _assert_close(a, b, "final state")
    names = (
        ["x"] + [f"state{i}" for i in range(len(state))] + [n for n, _ in cell.named_parameters()]
    )
    for n, a, b in zip(names, got[2], ref[2], strict=True):
        _assert_close(a, b, f"grad of {n}")


@pytest.mark.parametrize("name", NATIVE_CELLS)
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, False), (2, True)])
def test_native_model_matches_loop(name, num_layers, bidirectional):
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, learn_init=True, num_classes=3)
    torch.manual_seed(0)
    native = SequenceClassifier(name, IN, H, engine="native", **kw).double()
    loop = SequenceClassifier(name, IN, H, engine="loop", **kw).double()
    with torch.no_grad():
        for p in native.parameters():
            p.add_(0.1 * torch.randn_like(p))  # includes the learned initial states
    loop.load_state_dict(native.state_dict())
    x = torch.randn(T, B, IN, dtype=torch.float64)
    results = []
    for model in (native, loop):
        logits, final = model(x)
        loss = (logits * torch.arange(logits.numel(), dtype=x.dtype).view_as(logits)).sum()
        loss = loss + sum(s.pow(2).sum() for st in final for s in st)
        loss.backward()
        results.append((logits, final, dict(model.named_parameters())))
    assert native.engine_name == "native" and loop.engine_name == "loop"
    _assert_close(results[0][0], results[1][0], "logits")
    for st_a, st_b in zip(results[0][1], results[1][1], strict=True):
        for a, b in zip(st_a, st_b, strict=True):
            _assert_close(a, b, "final state")
    for n, p in results[0][2].items():
        assert p.grad is not None, n
        _assert_close(p.grad, results[1][2][n].grad, f"grad of {n}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NATIVE_CELLS)
def test_native_on_cuda_matches_loop(name):
    cell = _cell(name).float().cuda()
    x = torch.randn(T, B, IN, device="cuda", requires_grad=True)
    state = tuple(s.detach().float().cuda().requires_grad_() for s in _random_state(cell))
    ref = _outputs_and_grads("loop", cell, x, state)
    got = _outputs_and_grads("native", cell, x, state)
    torch.testing.assert_close(got[0], ref[0], atol=1e-4, rtol=1e-4)
    for a, b in zip(got[2], ref[2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_native_rejects_a_recurrent_dropout_mask():
    cell = _cell("lstm")
    with pytest.raises(ValueError, match="recurrent dropout"):
        run_layer(
            "native",
            cell,
            torch.randn(T, B, IN, dtype=torch.float64),
            cell.zero_state(B),
            torch.ones(B, H, dtype=torch.float64),
        )


# ---- resolution ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_CELLS)
def test_loop_is_valid_for_every_cell_and_native_only_for_builtins(name):
    cell = _cell(name)
    valid = valid_engines(cell, "cpu", 0.0)
    assert "loop" in valid
    assert ("native" in valid) == (name in NATIVE_CELLS)
    assert "native" not in valid_engines(cell, "cpu", 0.25)  # no recurrent dropout there


@pytest.fixture
def fake_fused(monkeypatch):
    """A stand-in "fused" engine so the auto order can be tested before the real one exists."""
    engines.engines()  # load the real optional engines first, so teardown restores them
    module = types.SimpleNamespace(supported=True)
    module.supports = lambda cell, device, rd: module.supported
    module.run = engines.loop.run
    monkeypatch.setitem(engines._ENGINES, "fused", module)
    return module


def test_auto_prefers_fused_on_cpu_and_native_on_cuda(fake_fused):
    lstm, ugrnn_like = _cell("lstm"), _cell("lstm")
    ugrnn_like.native_mode = None  # instance attribute: not a built-in any more
    assert resolve_engine("auto", lstm, "cpu") == "fused"
    assert resolve_engine("auto", lstm, torch.device("cuda")) == "native"
    assert resolve_engine("auto", ugrnn_like, "cuda") == "fused"
    fake_fused.supported = False  # e.g. the extension could not be built
    assert resolve_engine("auto", lstm, "cpu") == "native"
    assert resolve_engine("auto", ugrnn_like, "cpu") == "loop"
    with pytest.raises(UserError, match="valid engines for it: auto, native, loop$"):
        resolve_engine("fused", lstm, "cpu")


def test_auto_is_the_first_valid_engine():
    cell = _cell("lstm")
    auto = resolve_engine("auto", cell, "cpu", recurrent_dropout=0.0)
    assert auto == valid_engines(cell, "cpu")[0] and auto in ("fused", "native")
    assert resolve_engine("auto", cell, "cpu", recurrent_dropout=0.3) in ("fused", "loop")
    assert resolve_engine("LOOP", cell, "cpu") == "loop"


def test_unknown_engine_is_a_one_line_user_error():
    cell = _cell("lstm")
    for call in (
        lambda: resolve_engine("turbo", cell, "cpu"),
        lambda: run_layer(
            "turbo", cell, torch.randn(T, B, IN, dtype=torch.float64), cell.zero_state(B)
        ),
        lambda: SequenceClassifier("lstm", IN, H, engine="turbo"),
    ):
        with pytest.raises(UserError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and "'turbo'" in message
        assert "loop" in message and "native" in message


@pytest.mark.parametrize("name", sorted(set(ALL_CELLS) - set(NATIVE_CELLS)))
def test_native_for_a_non_builtin_cell_names_the_valid_engines(name):
    cell = _cell(name)
    with pytest.raises(UserError) as info:
        resolve_engine("native", cell, "cpu")
    message = str(info.value)
    assert "\n" not in message and "'native'" in message
    assert message.endswith(", ".join(["auto", *valid_engines(cell, "cpu")]))


def test_native_with_recurrent_dropout_is_rejected():
    with pytest.raises(UserError, match="recurrent_dropout=0.2.*valid engines for it: auto"):
        resolve_engine("native", _cell("gru"), "cpu", recurrent_dropout=0.2)


def test_register_engine_requires_supports_and_run(monkeypatch):
    with pytest.raises(TypeError, match="supports"):
        engines.register_engine("broken", types.SimpleNamespace(run=engines.loop.run))
    monkeypatch.setattr(engines, "_ENGINES", dict(engines._ENGINES))
    engines.register_engine("mine", engines.loop)
    assert (
        "mine" in engines.list_engines() and resolve_engine("mine", _cell("gru"), "cpu") == "mine"
    )
