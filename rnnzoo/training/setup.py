"""Setup from config: a ``Job`` is everything one training run is built from.

``Job.build(cfg)`` validates the trainer settings, picks the device, seeds, loads the data,
builds the model, optimizer and scheduler. Checkpoints of a job (payload, restore, resume)
live in ``rnnzoo.training.checkpoints``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from omegaconf import DictConfig

from rnnzoo.data import SequenceData, Split, build_data
from rnnzoo.engines.denormal import flush_denormals
from rnnzoo.model import SequenceClassifier
from rnnzoo.training import tbptt
from rnnzoo.training.config import TrainerConfig
from rnnzoo.training.evaluate import evaluate
from rnnzoo.training.optim import build_optimizer, build_scheduler
from rnnzoo.training.runtime import run_config, seed_everything, select_device, set_threads


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
    engine_report: dict[str, Any]  # model.engine_report(): what runs, per layer, and why
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
        set_threads(settings.threads)
        flush_denormals(settings.flush_denormal)  # after set_threads: every pool thread
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
            engine_report=model.resolve_engines(device, torch.bfloat16 if bf16 else None),
            tbptt_steps=tbptt.check(
                settings.tbptt_steps,
                settings.tbptt_mode,
                model.bidirectional,
                dilated=max(model.dilations) > 1,
            ),
            optimizer=optimizer,
            scheduler=build_scheduler(cfg.get("scheduler"), optimizer),
            config=run_config(cfg),
        )

    @property
    def engine(self) -> str:
        """The engine that runs (one name, or "a/b" when layers differ)."""
        return self.engine_report["engine"]

    @property
    def engine_note(self) -> str:
        """Why an engine fell back, or how it runs ("" when there is nothing to say)."""
        return self.engine_report.get("engine_note") or ""

    @property
    def num_params(self) -> int:
        """Every parameter of the model, frozen ones included."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def num_trainable_params(self) -> int:
        """The parameters the optimizer updates (requires_grad)."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def evaluate(self, split: Split) -> tuple[float, float]:
        """(loss, accuracy) of the model as it is now on ``split`` (val or test)."""
        limit = self.settings.limit_eval_batches
        return evaluate(self.model, split, self.eval_batch_size, limit, self.autocast)

    def describe(self) -> str:
        """One log line saying what trains where."""
        m = self.model
        return (
            f"{self.cfg.get('run_name')}: {m.cell_name} h={m.hidden_size} x{m.num_layers} "
            f"({self.num_params} params, {self.num_trainable_params} trainable, engine "
            f"{self.engine}{f' ({self.engine_note})' if self.engine_note else ''}) on "
            f"{self.device}, "
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
            "engine_note": self.engine_note,
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
            "threads": torch.get_num_threads(),
            "flush_denormal": s.flush_denormal,
            "seed": self.seed,
        }
