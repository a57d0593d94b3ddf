"""``metrics.json``: the machine-readable record of one job, read by the results scripts.

Every record has every key of ``KEYS`` (null when unknown, e.g. ``test_acc`` of a job that
failed before testing), whatever the status, so readers need no special cases.
Accuracies are fractions in [0, 1]; ``val_acc`` is the best validation accuracy and
``best_step`` the optimizer step it was reached at; ``test_*`` come from that checkpoint.
``params`` counts every parameter, ``trainable_params`` those the optimizer updates (they
differ for cells with frozen weights, e.g. the ``esn`` reservoir). ``seconds`` is the wall
time of the training loop (training and validation, summed over resumed sessions);
``epochs`` counts epochs trained, fractional when a run stopped mid-epoch.
``engine`` is what actually ran (resolved at setup for the run's device and precision; "a/b"
when layers differ), ``engines`` the per-layer list when they differ (else null) and
``engine_note`` any fallback reason or how the engine runs (null when there is none).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from rnnzoo.training.checkpoints import atomic_write
from rnnzoo.training.progress import Progress

if TYPE_CHECKING:
    from rnnzoo.training.setup import Job

STATUSES = ("completed", "diverged", "failed", "interrupted")
KEYS = (
    "status",
    "error",
    "val_acc",
    "best_step",
    "test_acc",
    "test_loss",
    "epochs",
    "steps",
    "params",
    "trainable_params",
    "seconds",
    "seconds_per_epoch",
    "run_name",
    "cell",
    "data",
    "hidden_size",
    "num_layers",
    "seed",
    "engine",
    "engines",
    "engine_note",
    "history",
)


def _select(cfg: DictConfig, key: str) -> Any:
    """``cfg.<key>`` or None when missing or not resolvable (a failed job still gets a record)."""
    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    except Exception:
        return None


def record(cfg: DictConfig, status: str, **values: Any) -> dict[str, Any]:
    """A full metrics record: the identity of the job from ``cfg``, then ``values``."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    out: dict[str, Any] = dict.fromkeys(KEYS)
    out.update(
        status=status,
        run_name=_select(cfg, "run_name"),
        cell=_select(cfg, "model.cell"),
        data=_select(cfg, "data.name"),
        hidden_size=_select(cfg, "model.hidden_size"),
        num_layers=_select(cfg, "model.num_layers"),
        seed=_select(cfg, "seed"),
        history=[],
    )
    unknown = set(values) - set(KEYS)
    if unknown:
        raise ValueError(f"unknown metrics keys {sorted(unknown)}")
    out.update(values)
    return out


def from_run(
    cfg: DictConfig, status: str, progress: Progress, job: Job | None, **values: Any
) -> dict[str, Any]:
    """The record of a job from its progress, and from its job once built (None before)."""
    p = progress
    batches = job.num_batches if job is not None else 0
    epochs = p.epoch + (p.batch / batches if batches else 0.0)
    if job is not None:
        engines = job.engine_report.get("engines") or []
        values.update(
            cell=job.model.cell_name,
            params=job.num_params,
            trainable_params=job.num_trainable_params,
            engine=job.engine,
            engines=engines if len(set(engines)) > 1 else None,  # per layer when they differ
            engine_note=job.engine_note or None,
        )
    return record(
        cfg,
        status,
        val_acc=p.best_val_acc,
        best_step=p.best_step,
        epochs=round(epochs, 4),
        steps=p.step,
        seconds=round(p.seconds, 3),
        seconds_per_epoch=round(p.seconds / epochs, 3) if epochs else None,
        history=p.history,
        **values,
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Atomically write ``run_dir/metrics.json``; returns its path."""
    path = Path(run_dir) / "metrics.json"
    text = json.dumps(_finite(metrics), indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path
