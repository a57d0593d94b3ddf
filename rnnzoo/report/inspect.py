"""See inside a run: gradient flow through time, spectra and hidden states, init vs checkpoint.

    rnnzoo-inspect RUN_DIR [--checkpoint best|last|init] [--samples N]

writes ``RUN_DIR/inspect/``:

- ``grad_flow.png`` / ``grad_flow.json``: log10 ||dL/dh_t|| against t per layer, the mean over
  the first N test sequences, at initialization and at the checkpoint;
- ``spectrum.png``: eigenvalues of each recurrent matrix with the unit circle, init vs
  checkpoint (cells without one: skipped with a note);
- ``hidden.png``: hidden states (units x time) of a few test digits beside the digit, the
  gates' mean activation over time, activation maps for spatial states;
- ``summary.json``: per layer ``spectral_radius`` and ``sigma_max`` per matrix, and
  ``grad_norm_first_over_last`` = ||dL/dh_1|| / ||dL/dh_T|| with its log10 (init and checkpoint).

What is measured and how: ``rnnzoo.report.measure``. A sweep directory (runs below it) is
inspected run by run (a run that cannot be is reported and skipped) and the runs' first-layer
curves are overlaid per task in ``<sweep>/inspect/grad_flow_<task>.png``
(``rnnzoo.report.overlay``), which ``results.md`` links.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rnnzoo.errors import UserError
from rnnzoo.registry import cell_label
from rnnzoo.report.measure import Inspection, curves, measure_run, summary
from rnnzoo.report.overlay import OUT_DIR, OverlayRun, write_overlay

log = logging.getLogger(__name__)


def inspect_run(run_dir: str | Path, plots: bool = True, **kwargs: Any) -> Inspection:
    """Measure one run and write ``<run_dir>/inspect/``.

    Args:
        run_dir: a training run's directory.
        plots: draw the PNGs (needs matplotlib); the JSON files are written either way.
        kwargs: ``checkpoint``, ``samples``, ``digits``, ``device``, ``data_root``
            (see ``rnnzoo.report.measure.measure_run``).

    Raises:
        UserError: not a run directory, a missing checkpoint, bad numbers, missing data.
    """
    result = measure_run(run_dir, **kwargs)
    out = result.run_dir / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary(result), indent=2) + "\n")
    (out / "grad_flow.json").write_text(json.dumps(curves(result)) + "\n")
    if plots:
        try:
            from rnnzoo.report import figures
        except ImportError:
            log.warning('plots skipped: matplotlib is not installed (pip install -e ".[plot]")')
            return result
        figures.grad_flow_png(result, out / "grad_flow.png")
        figures.spectrum_png(result, out / "spectrum.png")
        figures.hidden_png(result, out / "hidden.png")
    return result


def is_run_dir(path: Path) -> bool:
    """A training run's directory: it has checkpoints or a Hydra config."""
    return any((path / "checkpoints").glob("*.pt")) or (path / ".hydra" / "config.yaml").is_file()


def find_run_dirs(path: Path) -> list[Path]:
    """Run directories at or below ``path``, sorted.

    Raises:
        UserError: ``path`` does not exist or holds no run.
    """
    if not path.is_dir():
        raise UserError(f"{path} is not a directory; give a run or sweep directory")
    if is_run_dir(path):
        return [path]
    found = {p.parent.parent for p in path.rglob(".hydra/config.yaml")}
    found |= {p.parent.parent for p in path.rglob("checkpoints/*.pt")}
    if not found:
        raise UserError(f"no runs below {path} (no checkpoints/*.pt, no .hydra/config.yaml)")
    return sorted(found)


def inspect_path(path: str | Path, plots: bool = True, **kwargs: Any) -> list[Inspection]:
    """Inspect a run directory, or every run below a sweep directory plus the overlay.

    Raises:
        UserError: no run found, or none could be inspected.
    """
    path = Path(path)
    runs = find_run_dirs(path)
    if runs == [path]:
        return [inspect_run(path, plots=plots, **kwargs)]
    done = []
    for run in runs:
        log.info("inspecting %s", run)
        try:
            done.append(inspect_run(run, plots=plots, **kwargs))
        except UserError as err:
            log.warning("skipped %s: %s", run, err)
    if not done:
        raise UserError(f"none of the {len(runs)} runs below {path} could be inspected")
    entries = [
        OverlayRun(
            r.run_dir, label, r.task, r.init.flow.log10_norms[0], r.final.flow.log10_norms[0]
        )
        for r, label in zip(done, labels(done), strict=True)
    ]
    write_overlay(path, entries, plots=plots)
    return done


def labels(results: list[Inspection]) -> list[str]:
    """One label per run: the cell, plus the model settings that differ between runs of the
    same cell and task (never the seed: those runs share a label and are averaged)."""
    flat = [_flat(r.config.get("model", {})) for r in results]
    out = []
    for r, f in zip(results, flat, strict=True):
        key = (r.cell, r.task)
        same = [g for q, g in zip(results, flat, strict=True) if (q.cell, q.task) == key]
        varied = {k for g in same for k in g if len({str(h.get(k)) for h in same}) > 1}
        extra = " ".join(
            f"{k.removeprefix('cell_kwargs.')}={f.get(k)}"
            for k in sorted(varied - {"cell", "engine"})
        )
        out.append(f"{cell_label(r.cell)} {extra}".strip())
    return out


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(_flat(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out
