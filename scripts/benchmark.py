"""Time one sMNIST training step for every cell and engine, side by side.

    python scripts/benchmark.py                                   # all cells, sMNIST shapes
    python scripts/benchmark.py --cells lstm,gru --json bench.json
    python scripts/benchmark.py -B 64 --threads 2 --naive-repeats 1
    python scripts/benchmark.py --cells lstm --profile            # where the fused time goes

Per cell: every engine (loop, native, fused), the torch.nn built-in, the GEMM-only floor and
the float64 per-step loop the original rnn_zoo used; the median of --repeats interleaved
timings after --warmup steps. The logic and the definitions live in rnnzoo/bench/;
this script is the console entry point ``rnnzoo-bench`` (rnnzoo/bench/cli.py).
"""

import sys

from rnnzoo.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
