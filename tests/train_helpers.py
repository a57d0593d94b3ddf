"""Helpers for the trainer tests: the real config, composed and shrunk to a tiny CPU run.

``tiny_overrides(root)`` are Hydra overrides for a run of a few hundred milliseconds on the
fake IDX files of ``tests/idx_fixtures.py``: row view (T=28), 250 train / 50 val / 100 test
images, batches of 32 (8 per epoch), hidden size 8, 2 epochs, CPU, plain log lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
TRAIN_PY = REPO / "train.py"
#: metrics that must match between runs that should be identical (not wall times)
COMPARED = ("status", "val_acc", "best_step", "test_acc", "test_loss", "epochs", "steps", "history")


def tiny_overrides(root: str | Path, *changes: str) -> list[str]:
    """The tiny-run overrides, with ``changes`` (key=value) replacing or adding keys."""
    base = [
        f"data.root={root}",
        "data.download=false",
        "data.view=row",
        "data.name=rowmnist",
        "data.val_size=50",
        "data.batch_size=32",
        "data.eval_batch_size=100",
        "model.hidden_size=8",
        "device=cpu",
        "trainer.epochs=2",
        "trainer.progress=false",
        "trainer.log_every_steps=1",
    ]
    changed = {c.split("=", 1)[0] for c in changes}
    return [o for o in base if o.split("=", 1)[0] not in changed] + list(changes)


def tiny_cfg(root: str | Path, *overrides: str) -> DictConfig:
    """The composed ``conf/config.yaml`` with ``tiny_overrides(root)`` and ``overrides``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=tiny_overrides(root, *overrides))


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def compared(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in COMPARED}


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, str(TRAIN_PY), *args]
