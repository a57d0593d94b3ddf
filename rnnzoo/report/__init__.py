"""Results of finished runs: ``runs`` (find and group run dirs), ``table`` (the Markdown
table and notes), ``curves`` (learning curves), ``results`` (``write_report``: both into a
directory) and ``cli`` (the ``rnnzoo-results`` command).

The inside view of a run (``rnnzoo-inspect``, ``inspect_cli``): ``inspect`` (files of a run or
sweep), ``measure`` (what is measured), ``gradflow`` (||dL/dh_t|| through time), ``spectra``
(recurrent eigenvalues), ``hidden`` (states and gates of a few digits), ``probe`` (the step
wrapper they share), ``figures`` and ``overlay`` (the PNGs), ``diagnostics`` (diag/* scalars
while training)."""

from rnnzoo.report.results import Report, write_report
from rnnzoo.report.runs import Group, Run, find_runs, group_runs, load_run
from rnnzoo.report.table import Row, markdown_table, summarize

__all__ = [
    "Group",
    "Report",
    "Row",
    "Run",
    "find_runs",
    "group_runs",
    "load_run",
    "markdown_table",
    "summarize",
    "write_report",
]
