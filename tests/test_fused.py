"""The fused engine: equal to the loop engine (outputs and every gradient, float64), with
recurrent-dropout masks, stacked layers, carried (TBPTT) states, several shards and both
input paths; the fallback when the C++ kernels cannot be built.

The first test that needs the kernels builds them (~25 s on a fresh 2-core machine; cached
afterwards in torch's extension directory)."""

from __future__ import annotations

import pytest
import torch
from cell_groups import generic_cells
from torch import Tensor, nn

from rnnzoo.cells import RecurrentCell
from rnnzoo.engines import Resolution, RunSpec, fused, fused_build, loop, resolve, resolve_engine
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell

F64 = torch.float64
T, B, H = 20, 5, 8
ALL = [n for n in generic_cells() if create_cell(n, 1, 4).fused_kernel]


@pytest.fixture(scope="module")
def ops():
    """The built kernels (fails, not skips: the fused engine must build on CI machines)."""
    return fused_build.load_ops()


def trainable(module: nn.Module) -> list[Tensor]:
    """Parameters that take a gradient (the esn reservoir is frozen by design)."""
    return [p for p in module.parameters() if p.requires_grad]


def make_cell(name: str, input_size: int, dtype=F64) -> RecurrentCell:
    torch.manual_seed(0)
    cell = create_cell(name, input_size, H).to(dtype)
    with torch.no_grad():  # non-zero everywhere (biases, peepholes): every term is exercised
        for p in cell.parameters():
            p.uniform_(-0.6, 0.6)
    return cell


def inputs(cell: RecurrentCell, steps: int = T, batch: int = B, dtype=F64, masked=True):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps, batch, cell.input_size, generator=g, dtype=dtype, requires_grad=True)
    state = tuple(
        (0.5 * torch.randn(batch, n, generator=g, dtype=dtype)).requires_grad_()
        for n in cell.state_sizes
    )
    mask = None
    if masked:  # a recurrent-dropout mask (0 or 1/keep), held fixed for the whole sequence
        mask = (torch.rand(batch, H, generator=g, dtype=dtype) > 0.3).to(dtype) / 0.7
    return x, state, mask


def run_both(cell: RecurrentCell, x: Tensor, state, mask):
    """Outputs, final state and the gradients of x, the initial state and every parameter
    from a loss that weights every output and the final state differently."""
    results = []
    for engine in (loop, fused):
        ys, final = engine.run(cell, x, state, mask)
        w = torch.linspace(-1.0, 1.0, ys.numel(), dtype=ys.dtype).view_as(ys)
        loss = (w * ys).sum() + sum((0.3 * s * s).sum() for s in final)
        grads = torch.autograd.grad(loss, [x, *state, *trainable(cell)])
        results.append((ys, final, grads))
    return results


def assert_same(ref, got, tol=1e-6):
    (ys0, st0, g0), (ys1, st1, g1) = ref, got
    torch.testing.assert_close(ys1, ys0, rtol=tol, atol=tol)
    for a, b in zip(st1, st0, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert len(g0) == len(g1)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# --- equal to loop, cell by cell ------------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("input_size", [1, 7], ids=["I1-inline", "I7-gemm"])
@pytest.mark.parametrize("name", ALL)
def test_fused_equals_loop(ops, name, input_size, masked):
    cell = make_cell(name, input_size)
    assert fused.kernel_name(cell) is not None
    x, state, mask = inputs(cell, masked=masked)
    ref, got = run_both(cell, x, state, mask)
    assert_same(ref, got)


@pytest.mark.parametrize("name", ALL)
def test_fused_equals_loop_with_several_shards(ops, name):
    # shards of 2 rows: 7 rows split 2/2/3 (the layout follows the batch size only)
    cell = make_cell(name, 3)
    x, state, mask = inputs(cell, batch=7)
    old = ops.config(0, 0, -1)
    try:
        ops.config(0, 2, -1)
        ref, got = run_both(cell, x, state, mask)
    finally:
        ops.config(0, old[1], -1)
    assert_same(ref, got)


@pytest.mark.parametrize("name", ALL)
def test_last_only_equals_the_last_step_of_loop(ops, name):
    """``last_only`` (the top layer) reads the last output from the kernel's final state:
    the loop's last output, and the same gradients, for every family (masked)."""
    cell = make_cell(name, 3)
    x, state, mask = inputs(cell)
    results = []
    for last_only in (False, True):
        engine = fused.run if last_only else loop.run
        kwargs = {"last_only": True} if last_only else {}
        ys, final = engine(cell, x, state, mask, **kwargs)
        ys = ys[-1:]
        loss = (ys * ys).sum() + sum((0.3 * s * s).sum() for s in final)
        results.append((ys, final, torch.autograd.grad(loss, [x, *state, *trainable(cell)])))
    assert results[1][0].shape == (1, B, cell.output_size)
    assert_same(*results)


@pytest.mark.parametrize("name", ["lstm", "gru", "intersection"])
def test_weight_gradient_chunks_of_one_step(ops, name):
    # chunk rows 1 -> one flush per step; the default accumulates several steps per GEMM
    cell = make_cell(name, 6)
    x, state, mask = inputs(cell)
    old = ops.config(0, 0, -1)
    try:
        ops.config(1, 0, -1)
        ref, got = run_both(cell, x, state, mask)
    finally:
        ops.config(old[0], 0, -1)
    assert_same(ref, got)


@pytest.mark.parametrize("name", ALL)
def test_no_grad_forward_equals_loop(ops, name):
    # without a graph the kernels keep no per-step buffers (rolling state instead)
    cell = make_cell(name, 2)
    x, state, mask = inputs(cell)
    with torch.no_grad():
        ys0, st0 = loop.run(cell, x, state, mask)
        ys1, st1 = fused.run(cell, x, state, mask)
    torch.testing.assert_close(ys1, ys0, rtol=1e-6, atol=1e-6)
    for a, b in zip(st1, st0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_buffers_for_backward_only_with_a_graph(ops, monkeypatch):
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(ops, name)

        def forward(self, *args):
            seen.append(args[-1])  # the "train" flag: keep per-step buffers for backward
            return ops.forward(*args)

    monkeypatch.setattr(fused_build, "load_ops", lambda: Spy())
    cell = make_cell("lstm", 2)
    x, state, _ = inputs(cell, masked=False)
    with torch.no_grad():
        fused.run(cell, x, state)  # evaluation
    cell.requires_grad_(False)
    fused.run(cell, x.detach(), tuple(s.detach() for s in state))  # nothing needs a gradient
    cell.requires_grad_(True)
    fused.run(cell, x, state)
    assert seen == [False, False, True]


@pytest.mark.parametrize("name", ["lstm", "gru", "peephole", "intersection", "mingru", "minlstm"])
def test_float32_close_to_loop(ops, name):
    cell = make_cell(name, 3, dtype=torch.float32)
    x, state, mask = inputs(cell, dtype=torch.float32)
    ref, got = run_both(cell, x, state, mask)
    assert_same(ref, got, tol=2e-4)


def test_unused_outputs_get_no_gradient_buffers(ops):
    # only the final h is used: ys and c_T get None gradients, the kernel still runs
    cell = make_cell("lstm", 2)
    x, state, _ = inputs(cell, masked=False)
    grads = []
    for engine in (loop, fused):
        _, (h, _) = engine.run(cell, x, state, None)
        grads.append(torch.autograd.grad(h.sum(), [x, *state, *trainable(cell)]))
    for a, b in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_every_cell_kernel_is_a_registered_family(ops):
    families = set(ops.families())
    for name in ALL:
        assert fused.kernel_name(make_cell(name, 1)) in families


def test_editing_a_header_renames_the_library(tmp_path, monkeypatch):
    # torch rebuilds on .cpp changes only; the name hashes every csrc file, headers included
    import shutil

    shutil.copytree(fused_build.CSRC, tmp_path / "csrc")
    monkeypatch.setattr(fused_build, "CSRC", tmp_path / "csrc")
    before = fused_build.library_name("AVX2")
    header = tmp_path / "csrc" / "families" / "lstm.h"
    header.write_text(header.read_text() + "// edited\n")
    assert fused_build.library_name("AVX2") != before
    assert [p.name for p in fused_build.sources()] == sorted(
        p.name for p in (tmp_path / "csrc").glob("*.cpp")
    )


def _run_threads(name: str, input_size: int, threads: int):
    """Outputs and all gradients of a float32 fused run with ``threads`` torch threads."""
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        cell = make_cell(name, input_size, dtype=torch.float32)
        x, state, mask = inputs(cell, batch=130, dtype=torch.float32)
        ys, final = fused.run(cell, x, state, mask)
        loss = (ys * ys).sum() + sum(s.sum() for s in final)
        grads = torch.autograd.grad(loss, [x, *state, *trainable(cell)])
        return [ys, *final, *grads]
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("input_size", [1, 7], ids=["I1-inline", "I7-gemm"])
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_bit_identical_for_any_thread_count(ops, name, input_size):
    # 130 rows = 2 shards of 65: one per thread with 2 threads, both on one thread with 1
    one = _run_threads(name, input_size, 1)
    two = _run_threads(name, input_size, 2)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


# --- through the model: stacked layers, masks, TBPTT chunks ------------------------------


def twin_models(name: str, **kw) -> tuple[SequenceClassifier, SequenceClassifier]:
    models = []
    for engine in ("loop", "fused"):
        torch.manual_seed(0)
        models.append(
            SequenceClassifier(name, 2, H, num_classes=3, engine=engine, **kw).to(F64).train()
        )
    models[1].load_state_dict(models[0].state_dict())
    return models[0], models[1]


def model_grads(model: SequenceClassifier, loss: Tensor) -> list[Tensor]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = sorted(params)
    return list(torch.autograd.grad(loss, [params[n] for n in names]))


@pytest.mark.parametrize("name", ALL)
def test_stacked_model_with_recurrent_dropout_equals_loop(ops, name):
    ref, fus = twin_models(name, num_layers=2, recurrent_dropout=0.3, learn_init=True)
    assert fus.engine_name == "fused" and ref.engine_name == "loop"
    x = torch.randn(T, B, 2, dtype=F64)
    torch.manual_seed(3)
    masks = ref.sample_masks(B)  # the same fixed masks for both
    out = []
    for model in (ref, fus):
        logits, final = model(x, masks=masks)
        loss = logits.square().sum() + sum(s.sum() for st in final for s in st)
        out.append((logits, model_grads(model, loss)))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-6, atol=1e-6)
    for a, b in zip(out[1][1], out[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "gru", "indrnn", "intersection"])
def test_bidirectional_model_equals_loop(ops, name):
    ref, fus = twin_models(name, bidirectional=True)
    x = torch.randn(T, B, 2, dtype=F64)
    grads = [model_grads(m, m(x)[0].square().sum()) for m in (ref, fus)]
    for a, b in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_tbptt_chunks_with_carried_state_equal_loop(ops, name):
    ref, fus = twin_models(name, num_layers=2, recurrent_dropout=0.25)
    x = torch.randn(T, B, 2, dtype=F64)
    torch.manual_seed(5)
    masks = ref.sample_masks(B)
    out = []
    for model in (ref, fus):
        state, losses = None, []
        for chunk in x.split(12):  # chunks of 12 and 8 steps, detached state carried over
            logits, state = model(chunk, state=state, masks=masks)
            state = [tuple(s.detach() for s in st) for st in state]
            losses.append(logits.square().sum())
        out.append((losses, model_grads(model, sum(losses))))
    for a, b in zip(out[1][0], out[0][0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    for a, b in zip(out[1][1], out[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# --- engine selection and the fallback ------------------------------------------------------


def test_supports_cpu_only(ops):
    cell = make_cell("ugrnn", 2)
    assert fused.supports(cell, torch.device("cpu"), 0.5)
    assert fused.check(cell, RunSpec(torch.device("cpu"))) == (True, "")
    assert not fused.supports(cell, torch.device("cuda"), 0.0)
    assert fused.kernel_name(nn.Module()) is None


@pytest.mark.parametrize("name", ALL)
def test_auto_picks_fused_on_cpu(ops, name):
    cell = make_cell(name, 1)
    assert resolve_engine("auto", cell, "cpu") == "fused"
    assert resolve_engine("auto", cell, "cpu", recurrent_dropout=0.2) == "fused"


def test_other_dtypes_are_refused_by_name_and_skipped_by_auto(ops):
    cell = make_cell("gru", 2, dtype=torch.bfloat16)
    spec = RunSpec(torch.device("cpu"), torch.bfloat16)
    with pytest.raises(UserError, match="float32 and float64") as err:
        resolve("fused", cell, spec)
    assert "\n" not in str(err.value)
    auto = resolve("auto", cell, spec)
    assert auto.engine == "native" and "fused skipped" in auto.note


def test_bf16_autocast_runs_the_kernels_in_float32(ops):
    cell = make_cell("lstm", 2, dtype=torch.float32)
    x, state, _ = inputs(cell, dtype=torch.float32, masked=False)
    ys_ref, final_ref = fused.run(cell, x, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ys, final = fused.run(cell, x, state)
    assert ys.dtype == torch.float32
    assert torch.equal(ys, ys_ref) and torch.equal(final[1], final_ref[1])
    spec = RunSpec(torch.device("cpu"), torch.float32, autocast=torch.bfloat16)
    res = resolve("auto", cell, spec)
    assert res == Resolution("fused", "bfloat16 autocast: fused kernels compute in float32")


def test_model_reports_what_runs_under_autocast(ops):
    model = SequenceClassifier("gru", 1, H, num_layers=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model(torch.randn(6, 3, 1))
    assert logits.dtype == torch.bfloat16  # the readout ran under autocast
    report = model.engine_report()
    assert report["engine"] == "fused" and report["engines"] == ["fused", "fused"]
    assert "compute in float32" in report["engine_note"]


@pytest.fixture
def broken_build(monkeypatch):
    """The kernels "cannot be built": the builder raises; the real state is restored after."""

    def fail():
        raise RuntimeError("Error building extension: c++: command not found")

    fused_build.reset()
    monkeypatch.setattr(fused_build, "_build", fail)
    yield
    fused_build.reset()  # the next load_ops() loads the cached library again


def test_a_broken_build_is_never_run_under_the_fused_label(broken_build):
    cell = make_cell("lstm", 2)
    spec = RunSpec(torch.device("cpu"), F64)
    auto = resolve("auto", cell, spec)
    assert auto.engine == "native"  # auto moves on, and says why
    assert "could not be built" in auto.note and "command not found" in auto.note
    with pytest.raises(UserError, match="engine 'fused' cannot run LSTMCell.*command not found"):
        resolve("fused", cell, spec)
    x, state, _ = inputs(cell)
    with pytest.raises(fused_build.FusedBuildError):
        fused.run(cell, x, state)
    model = SequenceClassifier("lstm", 1, H, engine="fused")
    with pytest.raises(UserError, match="could not be built"):
        model.resolve_engines()
