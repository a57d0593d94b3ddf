"""Results of finished runs: ``runs`` (find and group run dirs), ``table`` (the Markdown
table and notes), ``curves`` (learning curves), ``results`` (``write_report``: both into a
directory) and ``cli`` (the ``rnnzoo-results`` command)."""

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
