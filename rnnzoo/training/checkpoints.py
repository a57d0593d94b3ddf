"""Checkpoints end to end: the payload of a job, atomic writes, RNG states, finding the one to
resume from, restoring it, and loading the best weights for the test.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (never a pickled
module), so ``torch.load(weights_only=True)`` reads it:

- ``model``: state_dict; ``model_args``: ``SequenceClassifier.model_args()`` (rebuild exactly);
- ``optimizer`` / ``scheduler``: their state_dicts (scheduler None when there is none);
- ``rng``: python and torch (CPU, every CUDA device) generator states; the data order needs
  none, it is seeded by (seed, epoch), so the position in the epoch is enough;
- ``progress``: counters (epoch, batch within the epoch, step, best validation, history, ...);
- ``config``: the resolved run config as a plain dict.

Files are written to a temporary name in the same directory, fsynced, then ``os.replace``d,
so a run killed at any moment leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from rnnzoo.errors import UserError, one_line
from rnnzoo.training.progress import Progress

if TYPE_CHECKING:
    from torch import nn

    from rnnzoo.training.setup import Job

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the layout changes incompatibly


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` by calling ``write(f)`` on a temporary file, then renaming it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save(path: Path, payload: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a checkpoint dict."""
    atomic_write(path, lambda f: torch.save(payload, f))


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU with ``weights_only=True``.

    Raises:
        UserError: the file is missing, unreadable or not an rnnzoo checkpoint.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except Exception as err:
        raise UserError(f"cannot read checkpoint {path}: {one_line(err, 200)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not an rnnzoo checkpoint (format {FORMAT})")
    return payload


def rng_state() -> dict[str, Any]:
    """Python and torch generator states as tensors and lists (weights_only-loadable)."""
    version, internal, gauss = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "torch": torch.get_rng_state(),
        "cuda": list(cuda),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only if the device count matches)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning(
                "checkpoint has %d CUDA RNG states for %d devices; not restored",
                len(cuda),
                torch.cuda.device_count(),
            )


def resume_path(resume: str | None, run_dir: Path) -> Path | None:
    """The checkpoint ``trainer.resume`` names.

    Args:
        resume: None (start fresh), "auto" (``<run_dir>/checkpoints/last.pt`` if it exists,
            else start fresh), a ``.pt`` file, or a run directory (its ``checkpoints/last.pt``).
        run_dir: this job's run directory.

    Raises:
        UserError: an explicit path that does not exist.
    """
    if resume is None:
        return None
    if resume == "auto":
        path = run_dir / "checkpoints" / "last.pt"
        if path.is_file():
            return path
        log.info("trainer.resume=auto: no %s yet, starting fresh", path)
        return None
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise UserError(
            f"trainer.resume={resume}: {path} does not exist; valid: auto, a .pt file, "
            "or a run directory holding checkpoints/last.pt"
        )
    return path


def adopt_best(source: Path, ckpt_dir: Path) -> None:
    """When resuming from another run's checkpoint, copy its ``best.pt`` next to ours, so the
    final test uses the best model of the whole training, not only of the resumed part."""
    best = source.parent / "best.pt"
    target = ckpt_dir / "best.pt"
    if best.is_file() and best.resolve() != target.resolve():

        def copy(f: IO[bytes]) -> None:
            with best.open("rb") as src:
                shutil.copyfileobj(src, f)

        atomic_write(target, copy)


# ------------------------------------------------------------------------------- a job's state

#: config keys a resumed run may change: how long and how often, where the data lives, the
#: eval batch size, where it runs, how it is named and launched. Everything else changes the
#: trajectory (data order, model, optimizer, numerics) and must match the checkpoint's.
RESUME_MAY_DIFFER = frozenset(
    {
        *("trainer.epochs", "trainer.max_steps", "trainer.val_every_steps"),
        *("trainer.ckpt_every_steps", "trainer.log_every_steps", "trainer.limit_eval_batches"),
        *("trainer.progress", "trainer.resume", "trainer.init_from", "trainer.threads"),
        *("data.root", "data.download", "data.eval_batch_size", "device", "run_name", "run_dir"),
    }
)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _text(value: Any) -> str:
    return "null" if value is None else str(value)


def config_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: saved -> now`` for every key outside ``RESUME_MAY_DIFFER`` that differs."""
    old, new = _flat(saved), _flat(now)
    missing = "(absent)"
    return [
        f"{key}: {_text(old.get(key, missing))} -> {_text(new.get(key, missing))}"
        for key in sorted(old.keys() | new.keys())
        if key not in RESUME_MAY_DIFFER
        and not key.startswith("hydra.")
        and old.get(key, missing) != new.get(key, missing)
    ]


@dataclass
class Resume:
    """A checkpoint found and accepted for resuming (its config matches the run's)."""

    path: Path
    state: dict[str, Any]


def open_resume(resume: str | None, run_dir: Path, config: dict[str, Any]) -> Resume | None:
    """Find the checkpoint ``trainer.resume`` names and check it belongs to this run; writes
    nothing, so call it before touching the run dir.

    Args:
        resume: ``trainer.resume`` (see :func:`resume_path`).
        run_dir: this job's run directory.
        config: :func:`run_config` of this job.

    Returns:
        The checkpoint to continue, or None to start fresh.

    Raises:
        UserError: the checkpoint's config differs in a key outside ``RESUME_MAY_DIFFER``:
            one line naming every such key, ``key: checkpoint -> now``.
    """
    path = resume_path(resume, run_dir)
    if path is None:
        return None
    state = load(path)
    changes = config_changes(state.get("config") or {}, config)
    if changes:
        raise UserError(
            f"cannot resume from {path}, the config differs from the run's: "
            f"{', '.join(changes)} (checkpoint -> now); resume with the run's settings (only "
            "how long / how often, data.root, data.download, data.eval_batch_size and device "
            f"may change), or start a new run from its weights with trainer.init_from={path}"
        )
    return Resume(path, state)


def payload(job: Job, progress: Progress) -> dict[str, Any]:
    """The checkpoint of a job: model, optimizer, scheduler, RNG, progress, config."""
    return {
        "format": FORMAT,
        "model": job.model.state_dict(),
        "model_args": job.model.model_args(),
        "optimizer": job.optimizer.state_dict(),
        "scheduler": None if job.scheduler is None else job.scheduler.state_dict(),
        "rng": rng_state(),
        "progress": progress.to_dict(),
        "config": job.config,
    }


def save_job(path: Path, job: Job, progress: Progress) -> None:
    """Atomically write the job's checkpoint to ``path``."""
    save(path, payload(job, progress))


def check_model_args(what: str, ours: dict[str, Any], saved: dict[str, Any]) -> None:
    """Refuse a checkpoint whose model differs from the config's (the engine may differ).

    Raises:
        UserError: one line naming every differing model setting.
    """
    differ = sorted(k for k in {*ours, *saved} if k != "engine" and ours.get(k) != saved.get(k))
    if differ:
        was = ", ".join(f"{k}={saved.get(k)!r}" for k in differ)
        now = ", ".join(f"{k}={ours.get(k)!r}" for k in differ)
        raise UserError(
            f"{what}: it holds a model with {was}, the config asks for {now}; the model "
            "settings must match"
        )


def restore(job: Job, resume: Resume, run_dir: Path) -> Progress:
    """Continue a checkpoint accepted by :func:`open_resume`: model, optimizer, scheduler and
    RNG states into ``job``, its ``best.pt`` into this run; returns its progress.

    Raises:
        UserError: the checkpoint holds another model (or optimizer) than the config.
    """
    path, state = resume.path, resume.state
    check_model_args(f"cannot resume from {path}", job.model.model_args(), state["model_args"])
    try:
        job.model.load_state_dict(state["model"])
        job.optimizer.load_state_dict(state["optimizer"])
        if job.scheduler is not None and state.get("scheduler") is not None:
            job.scheduler.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise UserError(f"cannot resume from {path}: {one_line(err, 300)}") from None
    set_rng_state(state["rng"])  # last: building the model drew from the RNG
    adopt_best(path, run_dir / "checkpoints")
    progress = Progress.from_dict(state["progress"])
    log.info(
        "resumed from %s at epoch %d, batch %d, step %d",
        *(path, progress.epoch + 1, progress.batch, progress.step),
    )
    return progress


def init_path(init_from: str) -> Path:
    """The checkpoint ``trainer.init_from`` names: a ``.pt`` file, or a run directory's
    ``checkpoints/best.pt`` (the model its reported numbers come from).

    Raises:
        UserError: nothing there.
    """
    path = Path(init_from).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise UserError(
            f"trainer.init_from={init_from}: {path} does not exist; valid: a .pt file or a run "
            "directory holding checkpoints/best.pt"
        )
    return path


def init_weights(job: Job, init_from: str) -> Path:
    """Start a new run from the model weights of another run's checkpoint (weights only: the
    optimizer, scheduler, counters and run dir stay fresh). Returns the checkpoint's path.

    Raises:
        UserError: no such checkpoint, or it holds another model than the config asks for.
    """
    path = init_path(init_from)
    state = load(path)
    what = f"trainer.init_from={init_from}: cannot start from {path}"
    check_model_args(what, job.model.model_args(), state["model_args"])
    try:
        job.model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        raise UserError(f"{what}: {one_line(err, 300)}") from None
    log.info("model weights from %s (new run: fresh optimizer and counters)", path)
    return path


def load_weights(model: nn.Module, path: Path) -> None:
    """Load the model weights of the checkpoint at ``path`` (e.g. best.pt for the test)."""
    model.load_state_dict(load(path)["model"])
