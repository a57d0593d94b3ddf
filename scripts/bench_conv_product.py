"""Time the fused drivers' convolution product alone (``csrc/conv.h`` through the test ops
``conv_product`` / ``conv_product_backward``) at the row view's shapes, and print GFLOP/s.

    python scripts/bench_conv_product.py [--threads 1] [--batch 128] [--repeats 200]

One call is one step of a shard of ``--batch`` rows: forward S = conv([x ; h]) and backward
(dh, dK, db). The multiply-adds counted are the convolution's useful ones, 2 * Go * (Ci + C)
* k * W per row forward and twice that backward (no dx), so the figures include the ops'
allocations and the rows <-> map block transposes.
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnzoo.engines import fused_build


def timed(fn, repeats: int) -> float:
    for _ in range(10):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ops = fused_build.load_ops()
    for name, Go in (("convrnn", 16), ("convlstm", 64)):
        report(ops, name, Go, args)


def report(ops, name: str, Go: int, args: argparse.Namespace) -> None:
    """Time one cell's product (Go output maps) at the row view's shape and print it."""
    W, k, Ci, C = 28, 5, 1, 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, Ci * W, generator=g)
    h = torch.randn(args.batch, C * W, generator=g)
    kernel = torch.randn(Go, (Ci + C) * k, generator=g)
    dS = torch.randn(args.batch, Go * W, generator=g)
    flops = 2 * Go * (Ci + C) * k * W * args.batch
    fwd = timed(lambda: ops.conv_product(x, h, kernel, W), args.repeats)
    bwd = timed(lambda: ops.conv_product_backward(x, h, kernel, dS, W, False), args.repeats)
    print(
        f"{name}: Go={Go} B={args.batch} threads={args.threads}  forward {fwd * 1e3:.3f} ms "
        f"({flops / fwd / 1e9:.1f} GFLOP/s)  backward {bwd * 1e3:.3f} ms "
        f"({2 * flops / bwd / 1e9:.1f} GFLOP/s)"
    )


if __name__ == "__main__":
    main()
