"""The validated ``trainer`` config (``conf/trainer/default.yaml`` explains every key)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rnnzoo.errors import UserError

PRECISIONS = ("32", "bf16")
NAN_POLICIES = ("stop", "skip")


def _int(cfg: Mapping, key: str, default: int | None, minimum: int, optional: bool) -> int | None:
    value = cfg.get(key, default)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        valid = f"an integer >= {minimum}" + (" or null" if optional else "")
        raise UserError(f"trainer.{key} must be {valid}, got {value!r}")
    return value


def _positive(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"trainer.{key} must be a number > 0 or null (off), got {value!r}")
    return float(value)


def _choice(value: Any, key: str, valid: tuple[str, ...]) -> str:
    text = str(value).lower()
    if text not in valid:
        raise UserError(f"unknown trainer.{key}={value!r}; valid: {', '.join(valid)}")
    return text


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int = 10
    max_steps: int | None = None
    limit_train_batches: int | None = None
    limit_eval_batches: int | None = None
    tbptt_steps: int = 0  # 0 = full BPTT
    tbptt_mode: str = "final"
    clip_norm: float | None = 1.0
    clip_value: float | None = None
    precision: str = "32"
    val_every_steps: int | None = None
    ckpt_every_steps: int | None = None
    resume: str | None = None
    init_from: str | None = None  # a checkpoint or run dir whose model weights start the run
    threads: int | None = None  # torch's intra-op threads; None: torch's default (all cores)
    flush_denormal: bool = True  # FTZ/DAZ in every thread, for every engine (CPU)
    nan_policy: str = "stop"
    progress: bool = True
    diagnostics: bool = True
    log_every_steps: int = 50

    @classmethod
    def from_cfg(cls, cfg: Mapping | None) -> TrainerConfig:
        """Validate the ``trainer`` group (missing keys take the defaults above).

        Raises:
            UserError: one line naming the key, the bad value and what is valid.
        """
        cfg = cfg or {}
        tbptt = cfg.get("tbptt") or {}
        clip = cfg.get("clip") or {}
        steps = tbptt.get("steps", cls.tbptt_steps)
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
            raise UserError(f"trainer.tbptt.steps must be an integer >= 0, got {steps!r}")
        progress = cfg.get("progress", cls.progress)
        if not isinstance(progress, bool):
            raise UserError(f"trainer.progress must be true or false, got {progress!r}")
        diagnostics = cfg.get("diagnostics", cls.diagnostics)
        if not isinstance(diagnostics, bool):
            raise UserError(f"trainer.diagnostics must be true or false, got {diagnostics!r}")
        resume = cfg.get("resume")
        init_from = cfg.get("init_from")
        flush = cfg.get("flush_denormal", cls.flush_denormal)
        if not isinstance(flush, bool):
            raise UserError(f"trainer.flush_denormal must be true or false, got {flush!r}")
        return cls(
            epochs=_int(cfg, "epochs", cls.epochs, 1, optional=False),
            max_steps=_int(cfg, "max_steps", None, 1, optional=True),
            limit_train_batches=_int(cfg, "limit_train_batches", None, 1, optional=True),
            limit_eval_batches=_int(cfg, "limit_eval_batches", None, 1, optional=True),
            tbptt_steps=steps or 0,
            tbptt_mode=str(tbptt.get("mode", cls.tbptt_mode)),  # checked by rnnzoo.training.tbptt
            clip_norm=_positive(clip.get("norm", cls.clip_norm), "clip.norm"),
            clip_value=_positive(clip.get("value"), "clip.value"),
            precision=_choice(cfg.get("precision", 32), "precision", PRECISIONS),
            val_every_steps=_int(cfg, "val_every_steps", None, 1, optional=True),
            ckpt_every_steps=_int(cfg, "ckpt_every_steps", None, 1, optional=True),
            resume=None if resume in (None, "") else str(resume),
            init_from=None if init_from in (None, "") else str(init_from),
            threads=_int(cfg, "threads", None, 1, optional=True),
            flush_denormal=flush,
            nan_policy=_choice(cfg.get("nan_policy", "stop"), "nan_policy", NAN_POLICIES),
            progress=progress,
            diagnostics=diagnostics,
            log_every_steps=_int(cfg, "log_every_steps", cls.log_every_steps, 1, optional=False),
        )
