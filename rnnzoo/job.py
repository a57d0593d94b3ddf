"""A job: what one training run is built from its config, and its checkpoint payload.

``Job.build(cfg)`` validates the trainer settings, picks the device, seeds, loads the data,
builds the model, optimizer and scheduler; ``state_dict`` / ``load_state`` turn all of that
plus the loop's ``Progress`` into a checkpoint and back (see ``rnnzoo.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rnnzoo import checkpoint, tbptt
from rnnzoo.data import SequenceData, Split, build_data
from rnnzoo.errors import UserError
from rnnzoo.evaluate import evaluate
from rnnzoo.model import SequenceClassifier
from rnnzoo.optim import build_optimizer, build_scheduler
from rnnzoo.progress import Progress
from rnnzoo.runtime import seed_everything, select_device
from rnnzoo.trainer_config import TrainerConfig


@dataclass
class Job:
    """Everything a training run is made of (built by :meth:`build`)."""

    cfg: DictConfig
    settings: TrainerConfig
    device: torch.device
    autocast: Callable[[], AbstractContextManager]  # bf16 autocast, or disabled
    seed: int
    data: SequenceData
    batch_size: int
    eval_batch_size: int
    num_batches: int  # training batches per epoch
    model: SequenceClassifier
    engine: str
    tbptt_steps: int  # 0 = full BPTT
    optimizer: torch.optim.Optimizer
    scheduler: Any | None
    config: dict[str, Any]  # the resolved config, stored in checkpoints

    @classmethod
    def build(cls, cfg: DictConfig) -> Job:
        """Build the job from the composed config.

        Raises:
            UserError: a bad setting anywhere (DataError for missing or corrupt data).
        """
        settings = TrainerConfig.from_cfg(cfg.get("trainer"))
        device = select_device(cfg.get("device", "auto"), settings.precision)
        bf16 = settings.precision == "bf16"
        seed = seed_everything(cfg.get("seed", 0))  # before the model draws its init
        data = build_data(cfg.data, device)
        batch_size = int(cfg.data.batch_size)
        model = SequenceClassifier.from_config(
            cfg.model, data.input_size, data.num_classes, seq_len=data.seq_len
        )
        model = model.to(device)
        optimizer = build_optimizer(cfg.optim, model.parameters())
        return cls(
            cfg=cfg,
            settings=settings,
            device=device,
            autocast=partial(torch.autocast, device.type, torch.bfloat16, enabled=bf16),
            seed=seed,
            data=data,
            batch_size=batch_size,
            eval_batch_size=int(cfg.data.eval_batch_size),
            num_batches=data.train.num_batches(batch_size, settings.limit_train_batches),
            model=model,
            engine=model.engine_name,
            tbptt_steps=tbptt.check(settings.tbptt_steps, settings.tbptt_mode, model.bidirectional),
            optimizer=optimizer,
            scheduler=build_scheduler(cfg.get("scheduler"), optimizer),
            config=OmegaConf.to_container(cfg, resolve=True),
        )

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def evaluate(self, split: Split) -> tuple[float, float]:
        """(loss, accuracy) of the model as it is now on ``split`` (val or test)."""
        limit = self.settings.limit_eval_batches
        return evaluate(self.model, split, self.eval_batch_size, limit, self.autocast)

    def state_dict(self, progress: Progress) -> dict[str, Any]:
        """The checkpoint payload: model, optimizer, scheduler, RNG, progress, config."""
        return {
            "format": checkpoint.FORMAT,
            "model": self.model.state_dict(),
            "model_args": self.model.model_args(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": checkpoint.rng_state(),
            "progress": progress.to_dict(),
            "config": self.config,
        }

    def load_state(self, path: Path) -> Progress:
        """Restore a checkpoint written by :meth:`state_dict`; returns its progress.

        Raises:
            UserError: the checkpoint holds another model (or optimizer) than the config.
        """
        state = checkpoint.load(path)
        ours, saved = self.model.model_args(), state["model_args"]
        differ = sorted(k for k in {*ours, *saved} if k != "engine" and ours.get(k) != saved.get(k))
        if differ:
            was = ", ".join(f"{k}={saved.get(k)!r}" for k in differ)
            now = ", ".join(f"{k}={ours.get(k)!r}" for k in differ)
            raise UserError(
                f"cannot resume from {path}: it holds a model with {was}, the config asks for "
                f"{now}; resume with the same model settings"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, ValueError, RuntimeError) as err:
            reason = " ".join(str(err).split())[:300]
            raise UserError(f"cannot resume from {path}: {reason}") from None
        checkpoint.set_rng_state(state["rng"])  # last: building the model drew from the RNG
        return Progress.from_dict(state["progress"])

    def describe(self) -> str:
        """One log line saying what trains where."""
        m = self.model
        return (
            f"{self.cfg.get('run_name')}: {m.cell_name} h={m.hidden_size} x{m.num_layers} "
            f"({self.num_params} params, engine {self.engine}) on {self.device}, "
            f"{self.num_batches} batches of {self.batch_size} per epoch"
        )

    def hparams(self) -> dict[str, Any]:
        """The hyperparameters shown in TensorBoard's HPARAMS tab."""
        c, s, m = self.cfg, self.settings, self.model
        return {
            "cell": m.cell_name,
            "hidden_size": m.hidden_size,
            "num_layers": m.num_layers,
            "dropout": m.dropout_rate,
            "recurrent_dropout": m.recurrent_dropout,
            "bidirectional": m.bidirectional,
            "engine": self.engine,
            "data": c.data.name,
            "batch_size": self.batch_size,
            "optim": str(c.optim._target_).rsplit(".", 1)[-1],
            "lr": float(c.optim.lr),
            "scheduler": str(c.scheduler.get("_target_") or "none").rsplit(".", 1)[-1],
            "epochs": s.epochs,
            "tbptt_steps": self.tbptt_steps,
            "tbptt_mode": s.tbptt_mode,
            "clip_norm": s.clip_norm,
            "precision": s.precision,
            "seed": self.seed,
        }
