"""Side-by-side timing of one sMNIST training step for every cell and engine.

One training step = forward over the whole sequence, cross-entropy on the last step's
readout, backward, Adam update (``zero_grad`` included). At Sequential MNIST shapes by default:
batch 128, hidden 128, 1 layer, 784 steps, 1 input, 10 classes. For every cell, in the same
process and interleaved (each repeat times every contender once, so load changes on a busy
machine hit them all alike), with the median of ``repeats`` timings after ``warmup`` steps:

- every engine that supports the cell (``loop``, ``native``, ``fused``, ``scan``);
- ``builtin``: the torch.nn module where one exists (``contenders.py``);
- ``gemm``: the floor, the matrix multiplies alone at the same shapes, read from the cell
  contract (``floor.py`` defines it);
- ``naive64``: how the original rnn_zoo trained, float64 and per-step linear layers
  (``contenders.py``).

Ratios per engine: ``ratio_vs_builtin`` = builtin ms / engine ms (> 1: faster than torch.nn),
``ratio_vs_gemm`` = engine ms / GEMM-only ms (>= 1; 1 would be all matmul), and
``ratio_vs_naive64`` = naive64 ms / engine ms. Targets (shown, not enforced): the best engine
at most 2.0x its GEMM floor, at least 1.5x faster than the built-in, at least 4x faster than
naive64.

Wall-clock times (``time.perf_counter``). Input: standard normal pixels, random labels,
fixed seeds. Denormal floats: gradients that vanish over 784 steps pass through the
denormal range, where every float op is ~100x slower. ``flush_denormal`` (default True, the
headline: like-for-like, what ``trainer.flush_denormal`` does in training) sets FTZ/DAZ on
every thread of torch's pool for all contenders. With it False, torch's kernels (loop,
native, builtin) compute on denormals, several times slower on this input, while the fused
kernels still flush in their own threads: what a plain torch user gets.

Modules: ``config.py`` (what to time), ``contenders.py`` (one closure per contender),
``floor.py`` (the GEMM-only floor), ``timing.py`` (interleaved timing, ratios, the whole
run), ``table.py`` (the printed table), ``cli.py`` (``rnnzoo-bench``), ``memory.py`` (its
``--memory`` mode).
"""

from rnnzoo.bench.config import BenchConfig
from rnnzoo.bench.table import format_table
from rnnzoo.bench.timing import run_benchmark

__all__ = ["BenchConfig", "format_table", "run_benchmark"]
