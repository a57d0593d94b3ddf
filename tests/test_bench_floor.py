"""The benchmark's GEMM-only floor, read from the cell contract (``fused_params``): the
shapes of the matrix multiplies it times for each kind of cell, and a floor row for cells
whose parameters do not carry torch's names (the LMU); row cells: their convolution's GEMM."""

from __future__ import annotations

import json

import pytest

from rnnzoo.bench import BenchConfig, run_benchmark
from rnnzoo.bench.floor import gemm_layers
from rnnzoo.model import SequenceClassifier

H = 8


def layers(cell: str, input_size: int = 1, num_layers: int = 1, const: bool = False, **kw):
    model = SequenceClassifier(cell, input_size, H, 10, num_layers, engine="loop", cell_kwargs=kw)
    got = [(layer.rec, layer.inp, layer.dx, layer.backward) for layer in gemm_layers(model)]
    return [layer.const for layer in gemm_layers(model)] if const else got


@pytest.mark.parametrize(
    ("cell", "gates"), [("rnn", 1), ("irnn", 1), ("lstm", 4), ("gru", 3), ("peephole", 4)]
)
def test_classic_floor_is_the_recurrent_gemm_and_the_wide_input_projection(cell, gates):
    G = gates * H
    assert layers(cell) == [((G, H), None, False, True)]  # one pixel: an outer product
    assert layers(cell, input_size=3) == [((G, H), (G, 3), False, True)]
    assert layers(cell, num_layers=2)[1] == ((G, H), (G, H), True, True)  # dx for layer 1


def test_element_wise_cells_floor_is_their_input_projection():
    assert layers("indrnn") == [(None, (H, 1), False, True)]
    assert layers("lru") == [(None, (2 * H, 1), False, True)]  # [gamma B_re; gamma B_im]


def test_lmu_floor_is_its_two_step_products():
    # [h | m_t] [W_h | W_m]^T with its weight gradient, and the constant m Abar^T (no dW)
    d = 5
    assert layers("lmu", order=d) == [((H, H + d), None, False, True)]
    assert layers("lmu", input_size=3, order=d) == [((H, H + d), (H + 1, 3), False, True)]
    assert layers("lmu", order=d, const=True) == [(d, d)]
    assert layers("lstm", const=True) == [None]


@pytest.mark.parametrize(("cell", "gates"), [("convrnn", 1), ("convlstm", 4)])
def test_row_cells_floor_is_their_convolution_gemm_over_b_times_w_columns(cell, gates):
    """Both maps are one GEMM per step, (Go, (C_in + C) * k) on B * W columns: for C = 2
    maps of W = 28 and k = 3, (Go, 9) with Go = gates * C; no dense (Go*W, C*W) matrix."""
    model = SequenceClassifier(
        cell, 28, 2 * 28, 10, 2, engine="loop", cell_kwargs={"kernel_size": 3}
    )  # fmt: skip
    got = [(layer.rec, layer.inp, layer.dx, layer.width) for layer in gemm_layers(model)]
    Go = gates * 2
    assert got == [((Go, (1 + 2) * 3), None, False, 28), ((Go, (2 + 2) * 3), None, True, 28)]


def test_lmu_gets_a_floor_row_and_its_ratio():
    cfg = BenchConfig(
        batch_size=2, hidden_size=4, seq_len=3, cells=["lmu"], engines=["loop"], repeats=1,
        warmup=0, naive=False,
    )  # fmt: skip
    res = run_benchmark(cfg)["cells"]["lmu"]
    assert res["gemm"]["ms_per_step"] > 0
    assert res["engines"]["loop"]["ratio_vs_gemm"] > 0


def test_benchmark_writes_every_ratio(tmp_path):
    from rnnzoo.bench import BenchConfig, format_table, run_benchmark

    cfg = BenchConfig(
        batch_size=4, hidden_size=8, seq_len=6, cells=["lstm", "indrnn"], repeats=2,
        naive_repeats=1, warmup=1,
    )  # fmt: skip
    report = run_benchmark(cfg)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    data = json.loads(path.read_text())
    lstm = data["cells"]["lstm"]
    assert set(lstm["engines"]) == {"loop", "native", "fused"}
    for row in lstm["engines"].values():
        for key in ("ms_per_step", "seq_per_s", "ratio_vs_builtin", "ratio_vs_gemm"):
            assert row[key] > 0
        assert row["ratio_vs_naive64"] > 0
    assert lstm["builtin"]["ms_per_step"] > 0 and lstm["gemm"]["ms_per_step"] > 0
    assert data["cells"]["indrnn"]["engines"]["fused"]["ratio_vs_builtin"] is None
    assert lstm["best"] in lstm["engines"]
    assert "lstm" in format_table(report)
