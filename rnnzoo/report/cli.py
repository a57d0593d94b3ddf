"""``rnnzoo-results``: results table and learning curves from run / sweep directories.

    rnnzoo-results multirun/2025-01-31/12-00-00.123456        # or python scripts/results.py
    rnnzoo-results multirun/ outputs/ -o results/ --no-plots

Finds every run below the given directories (metrics.json), groups runs that differ only in
the seed, and writes results.md (mean ± std over seeds; failed / diverged runs counted
separately) and curves_<task>.png (needs matplotlib: pip install -e ".[plot]").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnzoo.errors import UserError, print_error
from rnnzoo.report.results import write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rnnzoo-results", description=__doc__.split("\n")[0])
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
    """Write the report and print the table; 0 on success, 2 on a user error (one line)."""
    args = parse_args(argv)
    out = args.out or (args.paths[0] / "results" if len(args.paths) == 1 else Path("results"))
    try:
        report = write_report(args.paths, out, plots=not args.no_plots)
    except UserError as err:
        print_error(err)
        return 2
    print(report.table, end="")
    print(f"{report.runs} runs, {report.groups} configurations -> {report.table_path}")
    print(report.plot_message)
    return 0
