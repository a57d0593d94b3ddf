"""The zoo's gradient flow in one picture: runs of a sweep overlaid per task.

``write_overlay`` draws ``<sweep>/inspect/grad_flow_<task>.png``: log10 ||dL/dh_t|| of the
first layer against t, one line per label (a cell, plus the settings that tell its runs apart;
runs with the same label, i.e. other seeds, are averaged in log10: a geometric mean), at
initialization (left) and at the checkpoint (right); and ``sweep.json`` with each run's
numbers. ``gradient_flow_links`` is what ``results.md`` shows of them. Plain data in, so the
results report can link the pictures without importing the inspector.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

OUT_DIR = "inspect"  # the inspector's output directory in a run or sweep directory


@dataclass
class OverlayRun:
    """One run's first-layer curves (log10 ||dL/dh_t||, (T,) each) and where it came from."""

    run_dir: Path
    label: str
    task: str
    init: np.ndarray
    final: np.ndarray


def write_overlay(sweep: Path, runs: list[OverlayRun], plots: bool = True) -> list[Path]:
    """``sweep.json`` and (with matplotlib) ``grad_flow_<task>.png`` into ``<sweep>/inspect/``.

    Returns:
        The PNGs written.
    """
    out = sweep / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "run_dir": os.path.relpath(r.run_dir, sweep),
            "label": r.label,
            "task": r.task,
            "log10_grad_norm_first_over_last": {
                "init": _ratio(r.init),
                "checkpoint": _ratio(r.final),
            },
        }
        for r in runs
    ]
    (out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    if not plots:
        return []
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        log.warning('overlay skipped: matplotlib is not installed (pip install -e ".[plot]")')
        return []
    by_task: dict[str, dict[str, list[OverlayRun]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_task[r.task][r.label].append(r)
    written = []
    for task, groups in sorted(by_task.items()):
        fig = Figure(figsize=(12, 4.6), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for i, (label, members) in enumerate(sorted(groups.items())):
            n = f" (n={len(members)})" if len(members) > 1 else ""
            for ax, which in zip(axes, ("init", "final"), strict=True):
                curve = np.mean([getattr(r, which) for r in members], axis=0)
                t = np.arange(1, len(curve) + 1)
                ax.plot(t, curve, color=f"C{i % 10}", lw=1.3, label=label + n)
        for ax, title in zip(axes, ("at initialization", "at the checkpoint"), strict=True):
            ax.set_title(f"{task}: ||dL/dh_t|| of the first layer {title}")
            ax.set_xlabel("time step t")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("log10 ||dL/dh_t|| (mean over test sequences)")
        axes[1].legend(fontsize="small")
        path = out / f"grad_flow_{_safe(task)}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def gradient_flow_links(paths: Iterable[str | Path], out_dir: str | Path) -> str:
    """Markdown linking every ``<path>/inspect/grad_flow_<task>.png`` from ``out_dir``, or ""."""
    pngs = [p for path in paths for p in sorted((Path(path) / OUT_DIR).glob("grad_flow_*.png"))]
    if not pngs:
        return ""
    lines = ["", "## Gradient flow through time", ""]
    for png in pngs:
        task = png.stem.removeprefix("grad_flow_")
        rel = Path(os.path.relpath(png.resolve(), Path(out_dir).resolve())).as_posix()
        lines.append(f"- {task}: [{png.name}]({rel}) (from rnnzoo-inspect)")
    return "\n".join(lines) + "\n"


def _ratio(curve: np.ndarray) -> float | None:
    """log10(g_1 / g_last), the last step with a gradient; None when there is none."""
    finite = np.flatnonzero(np.isfinite(curve))
    if not finite.size or not np.isfinite(curve[0]):
        return None
    return float(curve[0] - curve[finite[-1]])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "task"
