"""The results table: one Markdown row per configuration (mean ± std over completed seeds),
and notes listing every run left out and why."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnzoo.errors import one_line
from rnnzoo.report.runs import Group


@dataclass
class Row:
    """One table row: the summary of a configuration."""

    group: Group
    test_acc: tuple[float, float] | None  # percent (mean, std); std 0 for one seed
    val_acc: tuple[float, float] | None
    seeds: int
    not_completed: dict[str, int]
    seconds_per_epoch: float | None
    params: int | None
    engine: str  # what ran (metrics.json ``engine``), "a, b" if runs differ, "" if unknown


def summarize(group: Group) -> Row:
    """Mean ± std over the completed runs of a configuration, and the others counted."""
    done = group.completed
    others: dict[str, int] = defaultdict(int)
    for run in group.runs:
        if not run.completed:
            others[run.status] += 1
    spe = [s for s in (r.metrics.get("seconds_per_epoch") for r in done) if _finite(s)]
    params = next((r.metrics["params"] for r in group.runs if r.metrics.get("params")), None)
    engines = dict.fromkeys(str(r.metrics["engine"]) for r in done if r.metrics.get("engine"))
    return Row(
        group=group,
        test_acc=_mean_std([_percent(r.metrics.get("test_acc")) for r in done]),
        val_acc=_mean_std([_percent(r.metrics.get("val_acc")) for r in done]),
        seeds=len(done),
        not_completed=dict(others),
        seconds_per_epoch=statistics.fmean(spe) if spe else None,
        params=params,
        engine=", ".join(engines),
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _percent(value: Any) -> float | None:
    """Accuracies are stored as fractions in [0, 1]; the table shows percent."""
    return 100.0 * value if _finite(value) else None


def _mean_std(values: list[float | None]) -> tuple[float, float] | None:
    kept = [v for v in values if v is not None]
    if not kept:
        return None
    std = statistics.stdev(kept) if len(kept) > 1 else 0.0  # sample std over seeds
    return statistics.fmean(kept), std


def markdown_table(rows: Sequence[Row]) -> str:
    """The results table in GitHub Markdown."""
    with_setting = any(r.group.setting for r in rows)
    head = ["cell", "task", "hidden", "layers"] + (["setting"] if with_setting else [])
    head += ["params", "test acc (%)", "best val acc (%)", "seeds", "not completed", "s / epoch"]
    head += ["engine"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(_align(h) for h in head) + "|"]
    for row in rows:
        cell, task, hidden, layers = (_cell_text(x) for x in row.group.name)
        cells = [cell, task, hidden, layers] + ([row.group.setting] if with_setting else [])
        cells += [
            f"{row.params:,}" if row.params else "—",
            _pm(row.test_acc, row.seeds),
            _pm(row.val_acc, row.seeds),
            str(row.seeds),
            ", ".join(f"{n} {s}" for s, n in sorted(row.not_completed.items())) or "—",
            f"{row.seconds_per_epoch:.1f}" if row.seconds_per_epoch is not None else "—",
            row.engine or "—",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _align(header: str) -> str:
    return "---" if header in ("cell", "task", "setting", "engine") else "---:"


def _cell_text(value: Any) -> str:
    return "?" if value is None else str(value)


def _pm(mean_std: tuple[float, float] | None, seeds: int) -> str:
    if mean_std is None:
        return "—"
    mean, std = mean_std
    return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f}"


def notes(groups: Sequence[Group], base: Path | None = None) -> str:
    """Markdown notes under the table: what the numbers are, and every run left out."""
    lines = [
        "Test accuracy is measured with the best-validation checkpoint; mean ± sample std over "
        "the completed seeds of each configuration. Runs that did not complete are counted "
        "under 'not completed' and left out of the means.",
    ]
    left_out = [r for g in groups for r in g.runs if not r.completed]
    if left_out:
        lines += ["", "Runs left out:"]
        for run in left_out:
            error = one_line(run.metrics.get("error"), 160) or "no error recorded"
            lines.append(f"- `{_rel(run.path, base)}`: {run.status} — {error}")
    repeated = _repeated_seeds(groups)
    if repeated:
        lines += ["", "Same seed run more than once (each run counted): " + "; ".join(repeated)]
    return "\n".join(lines) + "\n"


def _rel(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(path.relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


def _repeated_seeds(groups: Sequence[Group]) -> list[str]:
    out = []
    for group in groups:
        seeds = [s for s in (r.metrics.get("seed") for r in group.completed) if s is not None]
        dupes = sorted({s for s in seeds if seeds.count(s) > 1})
        if dupes:
            out.append(f"{group.label}: seed {', '.join(map(str, dupes))}")
    return out
