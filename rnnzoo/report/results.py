"""Results of finished runs: a Markdown table and learning curves.

Reads the run directories the trainer writes (``metrics.json``, ``.hydra/config.yaml``,
``tensorboard/``), anywhere below the given paths, so a single run, a sweep or a whole
``multirun/`` tree all work. Runs whose configs differ only in the seed (and in where or how
they were launched: ``data.root``, ``run_name``, progress bars, ...) form one configuration.
For each configuration the table reports the test accuracy at the best-validation checkpoint
as mean ± std over its completed seeds. Runs that did not complete (diverged, failed,
interrupted, or that left no metrics.json at all) are counted and listed, never averaged in.

    rnnzoo-results multirun/2025-01-31/12-00-00.123456 -o results/    # or scripts/results.py

Learning curves (validation accuracy and loss against the optimizer step, mean over seeds)
are PNGs drawn with matplotlib, an optional extra (``pip install -e ".[plot]"``); without it
the table is still written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnnzoo.report.curves import plot_curves
from rnnzoo.report.overlay import gradient_flow_links
from rnnzoo.report.runs import Group, find_runs, group_runs
from rnnzoo.report.table import markdown_table, notes, summarize

TABLE_FILE = "results.md"


@dataclass
class Report:
    """What ``write_report`` produced."""

    table: str  # the Markdown table alone
    table_path: Path
    pngs: list[Path]
    plot_message: str  # one line: where the PNGs are, or why there are none
    runs: int
    groups: int


def write_report(paths: Iterable[str | Path], out_dir: str | Path, plots: bool = True) -> Report:
    """Table (``results.md``) and learning curves (``curves_<task>.png``) into ``out_dir``.

    Raises:
        UserError: a path does not exist or holds no runs.
    """
    paths = [Path(p) for p in paths]
    runs = find_runs(paths)  # before creating out_dir: it may lie inside a mistyped path
    groups = group_runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table([summarize(g) for g in groups])
    base = paths[0] if len(paths) == 1 else None
    sources = ", ".join(f"`{p}`" for p in paths)
    text = f"# Results\n\nFrom {sources}: {len(runs)} runs, {len(groups)} configurations.\n\n"
    table_path = out / TABLE_FILE
    links = gradient_flow_links(paths, out)  # rnnzoo-inspect's sweep overlays, when present
    table_path.write_text(text + table + "\n" + notes(groups, base) + links)
    pngs, message = _plots(groups, out) if plots else ([], "plots: skipped (--no-plots)")
    return Report(table, table_path, pngs, message, len(runs), len(groups))


def _plots(groups: Sequence[Group], out: Path) -> tuple[list[Path], str]:
    try:
        pngs = plot_curves(groups, out)
    except ImportError:
        return [], 'plots: skipped, matplotlib is not installed (pip install -e ".[plot]")'
    if not pngs:
        return [], "plots: none, no completed run has a validation history"
    return pngs, "plots: " + ", ".join(str(p) for p in pngs)
