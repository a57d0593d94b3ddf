"""What rnnzoo-inspect measures in a run: gradient flow and spectra at init and at a checkpoint,
hidden states of a few test digits, and the summary.json / grad_flow.json records.

"Init" is the model rebuilt from the run's saved config and seed exactly as training built it
(``Job.build``: same seed, same order of random draws). Both models run on the run's own task
view (pixel, row, permuted with the run's saved ``permutation.pt``), in float64 with the
``loop`` engine: ``rnnzoo.report.gradflow`` (||dL/dh_t||, mean over the first N test
sequences), ``rnnzoo.report.spectra`` (eigenvalues, spectral radius, sigma_max of every
recurrent matrix), ``rnnzoo.report.hidden`` (states and gates of a few digits).
``rnnzoo.report.inspect`` writes the files and pictures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from rnnzoo.errors import UserError
from rnnzoo.report.gradflow import GradFlow, grad_flow
from rnnzoo.report.hidden import HiddenRecord, record_hidden
from rnnzoo.report.probe import loop_copy
from rnnzoo.report.spectra import Spectrum, model_spectra
from rnnzoo.training import checkpoints
from rnnzoo.training.setup import Job

CHECKPOINTS = ("best", "last", "init")


@dataclass
class View:
    """One model state (init or checkpoint) seen from inside."""

    label: str  # "init" or "checkpoint"
    flow: GradFlow
    spectra: list[Spectrum]
    notes: list[str]


@dataclass
class Inspection:
    """Everything ``inspect_run`` measured, before it is drawn and written."""

    run_dir: Path
    config: dict[str, Any]  # the run's resolved config
    checkpoint: str
    cell: str
    task: str
    seq_len: int
    samples: int
    init: View
    final: View
    digits: HiddenRecord  # of the checkpoint model
    notes: list[str]


def checkpoint_path(run_dir: Path, which: str) -> Path | None:
    """The run's ``checkpoints/<which>.pt`` (None for "init").

    Raises:
        UserError: an unknown name, or the file does not exist.
    """
    if which not in CHECKPOINTS:
        raise UserError(f"unknown checkpoint {which!r}; valid: {', '.join(CHECKPOINTS)}")
    if which == "init":
        return None
    path = run_dir / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        have = sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt"))
        valid = ", ".join([*have, "init"])
        raise UserError(f"{path} does not exist; valid --checkpoint for this run: {valid}")
    return path


def run_config(run_dir: Path, payload: dict[str, Any] | None) -> dict[str, Any]:
    """The run's resolved config: from the checkpoint, else any checkpoint, else .hydra/."""
    if payload is not None:
        return payload["config"]
    for name in ("last", "best"):
        path = run_dir / "checkpoints" / f"{name}.pt"
        if path.is_file():
            return checkpoints.load(path)["config"]
    hydra = run_dir / ".hydra" / "config.yaml"
    if hydra.is_file():
        return OmegaConf.to_container(OmegaConf.load(hydra), resolve=True)
    raise UserError(
        f"{run_dir} is not a run directory: no checkpoints/*.pt and no .hydra/config.yaml"
    )


def build_job(
    config: dict[str, Any], device: str, data_root: str | None, engine: str = "loop"
) -> Job:
    """The run's job rebuilt from its config and seed (the model as it was initialized)."""
    cfg = OmegaConf.create(config)
    cfg.device = device
    cfg.model.engine = engine
    cfg.trainer.resume = None
    if data_root is not None:
        cfg.data.root = data_root
        cfg.data.download = False
    return Job.build(cfg)


def use_saved_permutation(job: Job, run_dir: Path) -> list[str]:
    """Serve the test split with the run's own ``permutation.pt`` when it has one."""
    path = run_dir / "permutation.pt"
    if not path.is_file():
        return []
    saved = torch.load(path, map_location="cpu", weights_only=True)
    test = job.data.test
    if test.permutation is not None and torch.equal(saved.to(test.device), test.permutation):
        return []
    test.permutation = saved.to(test.device)
    return [f"the permutation drawn from the config differs from {path}; the saved one is used"]


def load_weights(job: Job, path: Path) -> dict[str, Any]:
    """Load ``path``'s weights into ``job.model``; returns the checkpoint payload.

    Raises:
        UserError: the checkpoint holds another model than the config describes.
    """
    payload = checkpoints.load(path)
    ours, saved = job.model.model_args(), payload["model_args"]
    differ = sorted(k for k in {*ours, *saved} if k != "engine" and ours.get(k) != saved.get(k))
    if differ:
        raise UserError(f"{path} holds another model than its config: {', '.join(differ)} differ")
    job.model.load_state_dict(payload["model"])
    return payload


def view(label: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> View:
    """Gradient flow and spectra of one model state."""
    copy = loop_copy(model)
    spectra, notes = model_spectra(copy)
    return View(label, grad_flow(copy, x, y), spectra, notes)


def measure_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    samples: int = 32,
    digits: int = 3,
    device: str = "auto",
    data_root: str | None = None,
) -> Inspection:
    """Measure one run (see the module docstring); nothing is written.

    Args:
        run_dir: a training run's directory.
        checkpoint: "best", "last" or "init" (then both views show the initialization).
        samples: test sequences the gradient flow is averaged over.
        digits: test digits (of different classes) shown in hidden.png.
        device: "auto", "cpu", "cuda" or "cuda:N".
        data_root: where the data is, if not where the run found it.

    Raises:
        UserError: not a run directory, a missing checkpoint, bad numbers, missing data.
    """
    run_dir = Path(run_dir)
    if samples < 1 or digits < 1:
        raise UserError(f"--samples and --digits must be >= 1, got {samples} and {digits}")
    path = checkpoint_path(run_dir, checkpoint)
    payload = None if path is None else checkpoints.load(path)
    config = run_config(run_dir, payload)
    job = build_job(config, device, data_root)
    notes = use_saved_permutation(job, run_dir)
    if (config.get("trainer") or {}).get("init_from"):
        notes.append(
            "the run started from trainer.init_from's weights; 'init' here is the seeded "
            "initialization the config describes, not those weights"
        )
    x, y = next(job.data.test.batches(samples))  # the first N test sequences, (T, N, I)
    init = view("init", job.model, x, y)
    if path is not None:
        load_weights(job, path)
    final = view("checkpoint", job.model, x, y) if path is not None else init
    record = record_hidden(loop_copy(job.model), job.data.test, digits)
    return Inspection(
        run_dir=run_dir,
        config=config,
        checkpoint=checkpoint,
        cell=job.model.cell_name,
        task=job.data.name,
        seq_len=job.data.seq_len,
        samples=int(y.numel()),
        init=init,
        final=final,
        digits=record,
        notes=notes + init.notes,
    )


# summary.json ------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    """JSON has no inf/nan: None for them."""
    return value if math.isfinite(value) else None


def layer_summary(k: int, layer: str, views: tuple[View, View]) -> dict[str, Any]:
    """One layer's numbers, init and checkpoint side by side."""
    out: dict[str, Any] = {"layer": layer}
    for key in ("spectral_radius", "sigma_max"):
        out[key] = {
            v.label: {s.name: getattr(s, key) for s in v.spectra if s.layer == layer} for v in views
        }
    out["grad_norm_first_over_last"] = {v.label: _finite(v.flow.first_over_last(k)) for v in views}
    out["log10_grad_norm_first_over_last"] = {
        v.label: _finite(v.flow.log10_first_over_last(k)) for v in views
    }
    last = {v.label: v.flow.last_step(k) for v in views}
    out["grad_norm_last_step"] = {name: None if t is None else t + 1 for name, t in last.items()}
    return out


def summary(result: Inspection) -> dict[str, Any]:
    """The ``summary.json`` record."""
    views = (result.init, result.final)
    flow = result.init.flow
    notes = list(result.notes)
    if any(t is not None and t + 1 < result.seq_len for v in views for t in _last_steps(v)):
        notes.append(
            "h_T does not reach the loss in some layer (its output is not h): "
            "grad_norm_first_over_last uses the last step with a gradient (grad_norm_last_step)"
        )
    return {
        "run_dir": str(result.run_dir),
        "checkpoint": result.checkpoint,
        "cell": result.cell,
        "task": result.task,
        "seq_len": result.seq_len,
        "samples": result.samples,
        "layers": [layer_summary(k, name, views) for k, name in enumerate(flow.layers)],
        "grad_scale_log10": {v.label: v.flow.log10_scale for v in views},
        "notes": notes,
        "definitions": {
            "grad_norm_first_over_last": "mean_i ||dL_i/dh_1|| / mean_i ||dL_i/dh_T|| over the "
            "samples, float64 (0.0 when below 1e-307: see the log10)",
            "spectral_radius": "max |eigenvalue| of each recurrent matrix (diagonal: max |d|)",
            "sigma_max": "largest singular value of each recurrent matrix",
        },
    }


def _last_steps(v: View) -> list[int | None]:
    return [v.flow.last_step(k) for k in range(len(v.flow.layers))]


def curves(result: Inspection) -> dict[str, Any]:
    """The ``grad_flow.json`` record: log10 ||dL/dh_t|| per layer (null where zero)."""
    return {
        "cell": result.cell,
        "task": result.task,
        "checkpoint": result.checkpoint,
        "log10_grad_norm": {
            v.label: {
                name: [_finite(float(c)) for c in v.flow.log10_norms[k]]
                for k, name in enumerate(v.flow.layers)
            }
            for v in (result.init, result.final)
        },
    }
