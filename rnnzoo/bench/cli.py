"""``rnnzoo-bench``: time one sMNIST training step for every cell and engine, side by side.

    rnnzoo-bench                                                  # or python scripts/benchmark.py
    rnnzoo-bench --cells lstm,gru --json bench.json
    rnnzoo-bench -B 64 --threads 2 --naive-repeats 1
    rnnzoo-bench --cells lstm --profile                           # where the fused time goes
    rnnzoo-bench --memory                       # peak memory of one step, fused LSTM vs nn.LSTM
    rnnzoo-bench --no-flush-denormal            # IEEE denormals: what a plain torch user gets

Per cell: every engine (loop, native, fused), the torch.nn built-in, the GEMM-only floor and
the float64 per-step loop the original rnn_zoo used; the median of --repeats interleaved
timings after --warmup steps. The logic and the definitions live in rnnzoo/bench/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnzoo.bench import BenchConfig, format_table, run_benchmark
from rnnzoo.errors import UserError, print_error


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rnnzoo-bench", description=__doc__.split("\n")[0])
    parser.add_argument("-B", "--batch-size", type=int, default=128)
    parser.add_argument("-H", "--hidden-size", type=int, default=128)
    parser.add_argument("-L", "--layers", type=int, default=1)
    parser.add_argument("-T", "--seq-len", type=int, default=784)
    parser.add_argument("-I", "--input-size", type=int, default=1)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--cells", type=_csv, default=None, help="comma list (default: all)")
    parser.add_argument(
        "--engines", type=_csv, default=["loop", "native", "fused", "scan"], help="comma list"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--naive-repeats", type=int, default=3, help="for the float64 loop")
    parser.add_argument("--no-naive", action="store_true", help="skip the float64 loop")
    parser.add_argument("--no-builtin", action="store_true", help="skip torch.nn modules")
    parser.add_argument("--no-gemm", action="store_true", help="skip the GEMM-only floor")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--no-flush-denormal",
        dest="flush_denormal",
        action="store_false",
        help="keep IEEE denormals in torch's threads (what a plain torch user gets); default: "
        "every contender flushes them (like-for-like)",
    )
    parser.add_argument("--profile", action="store_true", help="fused kernels' phase times")
    parser.add_argument(
        "--memory", action="store_true", help="peak memory of one LSTM step: fused vs nn.LSTM"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table; 0 on success, 2 on a bad argument (one line)."""
    args = parse_args(argv)
    if args.memory:
        return _memory(args)
    cfg = BenchConfig(
        batch_size=args.batch_size,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        seq_len=args.seq_len,
        input_size=args.input_size,
        num_classes=args.classes,
        cells=args.cells,
        engines=args.engines,
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
        naive=not args.no_naive,
        naive_repeats=args.naive_repeats,
        builtin=not args.no_builtin,
        gemm=not args.no_gemm,
        threads=args.threads,
        flush_denormal=args.flush_denormal,
        profile=args.profile,
    )
    try:
        report = run_benchmark(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (UserError, ValueError) as err:
        print_error(err)
        return 2
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _memory(args: argparse.Namespace) -> int:
    """--memory: each contender in a fresh subprocess (see rnnzoo/bench/memory.py)."""
    from rnnzoo.bench.memory import MemoryConfig, format_memory, run_memory

    cfg = MemoryConfig(
        batch_size=args.batch_size,
        hidden_size=args.hidden_size,
        seq_len=args.seq_len,
        input_size=args.input_size,
        num_classes=args.classes,
    )
    report = run_memory(cfg)
    print(format_memory(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
