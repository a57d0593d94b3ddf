"""``rnnzoo-inspect``: see inside a run (or every run of a sweep).

    rnnzoo-inspect outputs/2026-12-01/12-00-00.123456            # best.pt vs init
    rnnzoo-inspect RUN_DIR --checkpoint last --samples 64
    rnnzoo-inspect multirun/2026-12-01/12-00-00                   # every run + overlay

Writes ``<run>/inspect/`` (grad_flow.png, spectrum.png, hidden.png, summary.json); on a sweep
also ``<sweep>/inspect/grad_flow_<task>.png``. See ``rnnzoo.report.inspect``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rnnzoo-inspect",
        description="Gradient flow through time, spectra and hidden states of a run.",
    )
    parser.add_argument("path", type=Path, help="a run directory or a sweep directory")
    parser.add_argument(
        "--checkpoint",
        default="best",
        choices=("best", "last", "init"),
        help="the trained state compared with the initialization (default: best)",
    )
    parser.add_argument(
        "--samples", type=int, default=32, help="test sequences averaged (default: 32)"
    )
    parser.add_argument("--digits", type=int, default=3, help="digits in hidden.png (default: 3)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--data-root", default=None, help="the data root, if it has moved")
    parser.add_argument("--no-plots", action="store_true", help="summary.json only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from rnnzoo.errors import UserError, print_error
    from rnnzoo.report.inspect import inspect_path

    try:
        results = inspect_path(
            args.path,
            checkpoint=args.checkpoint,
            samples=args.samples,
            digits=args.digits,
            device=args.device,
            data_root=args.data_root,
            plots=not args.no_plots,
        )
    except UserError as err:
        print_error(err)
        return 2
    for r in results:
        for layer in r.init.flow.layers:
            k = r.init.flow.layers.index(layer)
            init = r.init.flow.log10_first_over_last(k)
            final = r.final.flow.log10_first_over_last(k)
            print(
                f"{r.run_dir}: {r.cell} {layer}: log10 ||dL/dh_1||/||dL/dh_T|| "
                f"init {init:.2f}, {r.checkpoint} {final:.2f}"
            )
        print(f"-> {r.run_dir / 'inspect'}")
    if len(results) > 1:
        print(f"overlay -> {args.path / 'inspect'}")
    return 0
