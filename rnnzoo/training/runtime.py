"""Process-level settings of a job: run dir and resolved config, device, threads, seeds, Ctrl-C."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rnnzoo.errors import UserError

log = logging.getLogger(__name__)


def run_config(cfg: Any) -> dict[str, Any]:
    """The resolved config a checkpoint keeps (a plain dict; Hydra's own ``hydra`` node left
    out)."""
    if not OmegaConf.is_config(cfg):
        return {k: v for k, v in dict(cfg).items() if k != "hydra"}
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return OmegaConf.to_container(job, resolve=True)


def resolve_run_dir(cfg: DictConfig, run_dir: str | os.PathLike | None = None) -> Path:
    """The job's output directory: ``run_dir`` if given (tests, scripts), else Hydra's output
    dir when running under Hydra, else ``cfg.run_dir``.

    Raises:
        UserError: none of them is set.
    """
    if run_dir is not None:
        return Path(run_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    raise UserError("no run directory: pass train(cfg, run_dir=...) or set run_dir=<dir>")


def select_device(name: str, precision: str = "32") -> torch.device:
    """``device`` config -> torch.device: auto (CUDA when available) | cpu | cuda | cuda:N.

    Raises:
        UserError: an unknown name, CUDA asked for but unavailable, or bf16 on a GPU without it.
    """
    text = str(name).lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    valid = "valid: auto, cpu, cuda, cuda:N"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"unknown device={name!r}; {valid}") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device={name!r}; {valid}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device={name} but CUDA is not available here; use device=cpu or device=auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"device={name} but there are {count} CUDA device(s): cuda:0..{count - 1}"
            )
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise UserError("trainer.precision=bf16 but this GPU has no bfloat16; use precision=32")
    return device


def set_threads(threads: int | None) -> int:
    """``torch.set_num_threads(threads)`` (None: leave torch's default, all cores unless
    OMP_NUM_THREADS says otherwise); returns the number of threads torch uses."""
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def seed_everything(seed: int) -> int:
    """Seed python's and torch's generators (CPU and every CUDA device).

    Data order needs no global seed: it is drawn from (seed, epoch) by the data module.

    Raises:
        UserError: a seed that is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed must be an integer >= 0, got {seed!r}")
    random.seed(seed)
    torch.manual_seed(seed)
    return seed


class StopRequest:
    """Context manager turning the first Ctrl-C into a request, checked between batches.

    The first SIGINT sets ``requested``: the loop finishes its batch, saves a resumable
    checkpoint and stops. A second SIGINT raises KeyboardInterrupt at once. Only installed in
    the main thread and when SIGINT has Python's default handler.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: stopping after this batch (press Ctrl-C again to stop at once)")

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
