"""Learning curves of a results report: per-run validation curves (from metrics.json history,
else the TensorBoard events), their mean ± std over seeds, and the PNG (matplotlib, optional).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnzoo.report.runs import Group, Run

# learning-curve metrics: history key in metrics.json -> TensorBoard tag
CURVES = {"val_acc": "val/acc", "val_loss": "val/loss"}


def run_curve(run: Run, metric: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a validation metric (``val_acc`` or ``val_loss``).

    From metrics.json ``history``; if that has none, from the run's TensorBoard events.
    """
    points = [
        (int(h["step"]), float(h[metric]))
        for h in run.metrics.get("history") or []
        if h.get("step") is not None and _finite(h.get(metric))
    ]
    if points:
        return points
    return _events_curve(run.path / "tensorboard", CURVES[metric])


def _events_curve(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    if not log_dir.is_dir():
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags().get("scalars", []):
        return []
    return [(e.step, e.value) for e in events.Scalars(tag) if math.isfinite(e.value)]


def mean_curve(runs: Sequence[Run], metric: str) -> tuple[list[int], list[float], list[float]]:
    """Mean and std over runs at every step any of them evaluated (steps, means, stds)."""
    at_step: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for step, value in dict(run_curve(run, metric)).items():  # last value per step
            at_step[step].append(value)
    steps = sorted(at_step)
    means = [statistics.fmean(at_step[s]) for s in steps]
    stds = [statistics.stdev(at_step[s]) if len(at_step[s]) > 1 else 0.0 for s in steps]
    return steps, means, stds


def plot_curves(groups: Sequence[Group], out_dir: Path) -> list[Path]:
    """One PNG per task: validation accuracy and loss against the step, one line per
    configuration (mean over its completed seeds, band = ± std).

    Raises:
        ImportError: matplotlib is not installed.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    by_task: dict[str, list[Group]] = defaultdict(list)
    for group in groups:
        if group.completed:
            by_task[str(group.name[1])].append(group)
    written = []
    for task, task_groups in sorted(by_task.items()):
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        axes = fig.subplots(1, 2)
        drawn = 0
        for group in task_groups:
            drawn += _draw_group(axes, group)
        if not drawn:
            continue
        for ax, title in zip(axes, ("validation accuracy (%)", "validation loss"), strict=True):
            ax.set_title(f"{task}: {title}")
            ax.set_xlabel("optimizer step")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize="small", loc="lower right")
        path = out_dir / f"curves_{_safe(task)}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def _draw_group(axes: Any, group: Group) -> int:
    runs = group.completed
    label = f"{group.label} (n={len(runs)})"
    drawn = 0
    for ax, metric, scale in zip(axes, ("val_acc", "val_loss"), (100.0, 1.0), strict=True):
        steps, means, stds = mean_curve(runs, metric)
        if not steps:
            continue
        mean = [m * scale for m in means]
        line = ax.plot(steps, mean, marker="o" if len(steps) < 12 else None, ms=3, label=label)[0]
        if len(runs) > 1:
            lo = [m - s * scale for m, s in zip(mean, stds, strict=True)]
            hi = [m + s * scale for m, s in zip(mean, stds, strict=True)]
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        drawn += 1
    return drawn


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "task"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
