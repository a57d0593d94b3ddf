"""The fused drivers' convolution product (``rnnzoo/engines/csrc/conv.h``) against
``F.conv1d`` in float64: forward, dx, dh, the kernel's and the bias's gradient, for kernel
sizes 1-9, widths smaller than the kernel and odd channel counts; and the row cells on
it through the fused engine at those shapes, with several shards, 1 or 2 threads
(bit-identical), float32, and as two bidirectional layers with recurrent dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cell_checks import F64, assert_same, inputs, result

from rnnzoo.cells.contract import CellContractError, check_cell
from rnnzoo.engines import fused, fused_build, loop
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell

ROW_CELLS = ("convrnn", "convlstm")


@pytest.fixture(scope="module")
def ops():
    return fused_build.load_ops()


def conv_reference(x, h, kernel, width, dS):
    """S = conv1d([x ; h], kernel, "same") flattened, and dL/dx, dL/dh, dL/dkernel of
    sum(dS * S); x (B, Ci*W), h (B, C*W), kernel (Go, Ci + C, k)."""
    x, h, kernel = (t.detach().requires_grad_() for t in (x, h, kernel))
    B = h.shape[0]
    z = torch.cat([x.reshape(B, -1, width), h.reshape(B, -1, width)], dim=1)
    S = F.conv1d(z, kernel, padding="same").reshape(B, -1)
    dx, dh, dk = torch.autograd.grad((S * dS).sum(), [x, h, kernel])
    return S.detach(), dx, dh, dk


SHAPES = [  # (B, Ci, C, Go, W)
    (3, 1, 16, 64, 28),  # the row view's ConvLSTM (4C = 64 gate maps)
    (4, 3, 5, 7, 4),  # odd channel counts
    (2, 1, 3, 5, 2),  # width smaller than the kernel
    (5, 2, 1, 3, 1),  # one pixel
    (3, 0, 3, 3, 3),  # no input maps
    (37, 1, 3, 5, 6),  # several blocks of rows (8 lanes: 4 full blocks + 5 rows)
    (19, 2, 9, 10, 13),  # 13 positions: a tile's padded positions past the width
]


@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("need_dx", [True, False], ids=["dx", "nodx"])
@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])  # 3, 5, 7: tiles compiled for their k
@pytest.mark.parametrize(("B", "Ci", "C", "Go", "W"), SHAPES)
def test_product_matches_conv1d_forward_and_gradients(ops, B, Ci, C, Go, W, k, need_dx, dtype):
    """float32 takes the other code path on AVX2: 8 x 8 register transposes between rows and
    map blocks (float64's 4 lanes go element by element); B = 3, 37 leave lanes unused."""
    g = torch.Generator().manual_seed(k * 100 + W)
    x = torch.randn(B, Ci * W, generator=g, dtype=F64)
    h = torch.randn(B, C * W, generator=g, dtype=F64)
    kernel = torch.randn(Go, Ci + C, k, generator=g, dtype=F64)
    dS = torch.randn(B, Go * W, generator=g, dtype=F64)
    S, dx, dh, dk = conv_reference(x, h, kernel, W, dS)
    x, h, kernel, dS = (t.to(dtype) for t in (x, h, kernel, dS))
    S, dx, dh, dk = (t.to(dtype) for t in (S, dx, dh, dk))
    flat = kernel.reshape(Go, -1)  # (Go, (Ci + C) * k): [K_x | K_h]
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == F64 else {"rtol": 1e-5, "atol": 1e-4}
    torch.testing.assert_close(ops.conv_product(x, h, flat, W), S, **tol)
    got_dx, got_dh, got_dk, got_db = ops.conv_product_backward(x, h, flat, dS, W, need_dx)
    torch.testing.assert_close(got_dh, dh, **tol)
    torch.testing.assert_close(got_dk, dk.reshape(Go, -1), **tol)
    torch.testing.assert_close(got_db, dS.sum(0), **tol)  # of a bias added to S
    if need_dx:
        torch.testing.assert_close(got_dx, dx, **tol)
    else:
        assert got_dx.numel() == 0


def test_product_refuses_a_kernel_that_does_not_fit(ops):
    x, h = torch.zeros(2, 4, dtype=F64), torch.zeros(2, 12, dtype=F64)  # Ci = 1, C = 3 at W = 4
    with pytest.raises(RuntimeError, match="kernel must be"):
        ops.conv_product(x, h, torch.zeros(5, 9, dtype=F64), 4)  # 9 is not 4 * k


# --- the row cells on the product, through the fused engine ---------------------------------


def make(name: str, width: int, channels: int, kernel_size: int, in_channels: int = 1, **kw):
    torch.manual_seed(0)
    cell = create_cell(
        name, in_channels * width, channels * width, kernel_size=kernel_size, width=width, **kw
    ).to(F64)
    with torch.no_grad():  # nonzero everywhere: biases, peepholes
        for p in cell.parameters():
            p.uniform_(-0.6, 0.6)
    return cell


@pytest.mark.parametrize(
    ("width", "channels", "kernel_size", "in_channels"),
    [(3, 3, 5, 1), (2, 1, 5, 1), (5, 3, 1, 3), (7, 5, 3, 2)],
    ids=["W3<k5", "W2-C1", "k1-Ci3", "W7-C5-Ci2"],
)
@pytest.mark.parametrize("name", ROW_CELLS)
def test_fused_equals_loop_at_narrow_widths_and_odd_channels(
    ops, name, width, channels, kernel_size, in_channels
):
    cell = make(name, width, channels, kernel_size, in_channels)
    assert cell.fused_params().conv_width == width
    x, state, mask = inputs(cell, 5, 4, masked=True)
    assert_same(result(fused.run, cell, x, state, mask), result(loop.run, cell, x, state, mask))


@pytest.mark.parametrize("name", ROW_CELLS)
def test_fused_equals_loop_with_several_shards(ops, name):
    cell = make(name, 4, 3, 3)
    x, state, mask = inputs(cell, 5, 7, masked=True)
    old = ops.config(0, 0, -1)
    try:
        ops.config(0, 2, -1)  # shards of 2 rows: 7 rows split 2/2/3
        got = result(fused.run, cell, x, state, mask)
    finally:
        ops.config(0, old[1], -1)
    assert_same(got, result(loop.run, cell, x, state, mask))


@pytest.mark.parametrize("name", ROW_CELLS)
def test_fused_equals_loop_stacked_bidirectional_with_recurrent_dropout(name):
    """Two bidirectional layers (the second layer's input is 2C maps and needs dx), one
    recurrent-dropout mask per layer and direction, the top layer's last step only: logits
    and every parameter's gradient of the fused model equal the loop model's (float64)."""
    W, models = 28, []
    for engine in ("loop", "fused"):
        torch.manual_seed(0)
        models.append(
            SequenceClassifier(
                name, W, 3 * W, num_layers=2, bidirectional=True, recurrent_dropout=0.3,
                engine=engine, cell_kwargs={"kernel_size": 3},
            ).double().train()
        )  # fmt: skip
    ref, fus = models
    fus.load_state_dict(ref.state_dict())
    assert fus.engine_name == "fused" and ref.engine_name == "loop"
    x = torch.randn(6, 3, W, dtype=F64)  # T, B
    torch.manual_seed(3)
    masks = ref.sample_masks(3)
    assert masks is not None and len(masks) == 4
    out = []
    for model in (ref, fus):
        logits, final = model(x, masks=masks)
        loss = logits.square().sum() + sum(s.sum() for st in final for s in st)
        params = dict(model.named_parameters())
        grads = torch.autograd.grad(loss, list(params.values()))
        out.append((logits, dict(zip(params, grads, strict=True))))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-10, atol=1e-10)
    assert out[1][1].keys() == out[0][1].keys()
    for name, g in out[0][1].items():
        torch.testing.assert_close(out[1][1][name], g, rtol=1e-10, atol=1e-10, msg=name)


def _float32(cell, batch: int):
    """float32 copies of the cell and of float64 inputs (B = batch, masked)."""
    x, state, mask = inputs(cell, 5, batch, masked=True)
    x = x.detach().float().requires_grad_()
    state = tuple(s.detach().float().requires_grad_() for s in state)
    return cell.float(), x, state, mask.float()


@pytest.mark.parametrize("name", ROW_CELLS)
def test_bit_identical_for_any_thread_count(ops, name):
    # 130 rows = 2 shards of 65: one per thread with 2 threads, both on one thread with 1
    cell, x, state, mask = _float32(make(name, 6, 3, 3), 130)
    saved = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ys, final, grads = result(fused.run, cell, x, state, mask)
            runs.append([ys, *final, *grads.values()])
    finally:
        torch.set_num_threads(saved)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ROW_CELLS)
def test_float32_close_to_loop(ops, name):
    cell, x, state, mask = _float32(make(name, 28, 4, 5), 6)
    assert_same(result(fused.run, cell, x, state, mask), result(loop.run, cell, x, state, mask),
                tol=2e-4)  # fmt: skip


@pytest.mark.parametrize("name", ROW_CELLS)
def test_contract_accepts_the_compact_kernels_and_refuses_wrong_ones(name, monkeypatch):
    cell = make(name, 6, 3, 3)
    check_cell(cell, name)
    params = cell.fused_params()
    wrong = params._replace(w_ih=params.w_ih[:, :-1])  # (Go, C_in*k - 1)
    monkeypatch.setattr(cell, "fused_params", lambda: wrong)
    with pytest.raises(CellContractError, match="conv_width=6"):
        check_cell(cell, name)
