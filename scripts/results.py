"""Results table and learning curves from run / sweep directories.

    python scripts/results.py multirun/2025-01-31/12-00-00.123456
    python scripts/results.py multirun/ outputs/ -o results/ --no-plots

Finds every run below the given directories (metrics.json), groups runs that differ only in
the seed, and writes results.md (mean ± std over seeds; failed / diverged runs counted
separately) and curves_<task>.png (needs matplotlib: pip install -e ".[plot]").
The logic lives in rnnzoo/results.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        help="output directory (default: <path>/results for one path, ./results for several)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the table only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import rnnzoo  # noqa: F401
    except ImportError:  # a checkout without `pip install -e .`: use the repo this file is in
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rnnzoo.errors import UserError
    from rnnzoo.results import write_report

    out = args.out or (args.paths[0] / "results" if len(args.paths) == 1 else Path("results"))
    try:
        report = write_report(args.paths, out, plots=not args.no_plots)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.table, end="")
    print(f"{report.runs} runs, {report.groups} configurations -> {report.table_path}")
    print(report.plot_message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
