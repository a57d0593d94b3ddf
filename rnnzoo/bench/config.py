"""What the benchmark times: shapes, contenders, repeats, and the targets it reports."""

from __future__ import annotations

import dataclasses

ENGINES = ("loop", "native", "fused", "scan")
TARGETS = {"max_ratio_vs_gemm": 2.0, "min_ratio_vs_builtin": 1.5, "min_ratio_vs_naive64": 4.0}
#: cells that read image rows (convlstm, convrnn) run at the row view's shape, their model
#: config's width (16 channels x 28 pixels), without the float64 column (its per-step
#: linear layers are not how these cells were ever trained)
ROW_CELLS = ("convlstm", "convrnn")
ROW_SHAPE = {"seq_len": 28, "input_size": 28, "hidden_size": 16 * 28, "naive": False}
TRAIN_SIZE = 55000  # sMNIST training images after the 5000-image validation split


@dataclasses.dataclass
class BenchConfig:
    """What to time. Sizes default to Sequential MNIST (pixel by pixel)."""

    batch_size: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    seq_len: int = 784
    input_size: int = 1
    num_classes: int = 10
    cells: list[str] | None = None  # None: every registered cell
    engines: list[str] = dataclasses.field(default_factory=lambda: list(ENGINES))
    device: str = "cpu"
    repeats: int = 5
    warmup: int = 1
    naive: bool = True
    naive_repeats: int = 3
    builtin: bool = True
    gemm: bool = True
    threads: int | None = None
    flush_denormal: bool = True
    profile: bool = False
    seed: int = 0
